package main

import (
	"os"

	kwokcrd "sigs.k8s.io/kwok/kustomize/crd"
)

// printStageCRD writes KWOK's Stage CustomResourceDefinition, as shipped in the KWOK module
// version this binary is built with, so that the launcher installs the CRD that matches the
// controller (KWOK runs with --enable-crds=Stage and reads its stages from the cluster).
func printStageCRD() int {
	if _, err := os.Stdout.Write(kwokcrd.Stage); err != nil {
		return 1
	}
	return 0
}
