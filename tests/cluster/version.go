package main

import "k8s.io/component-base/version"

// buildVersion is the Kubernetes version stamped in at link time (see build.py).
func buildVersion() string {
	return "kubernetes " + version.Get().GitVersion
}
