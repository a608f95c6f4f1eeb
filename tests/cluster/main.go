// Command cluster runs one component of the local Kubernetes test control plane.
//
// It links kube-apiserver, kube-controller-manager, kube-scheduler, an embedded etcd, the KWOK
// controller, and the real node's kubelet and kube-proxy into one binary (a "hyperkube"): they
// share most of their packages (client-go, apimachinery, apiserver, grpc, otel), so one link is
// much cheaper than seven in build time, memory and disk. The first argument picks the component; the rest are its flags.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	_ "time/tzdata" // CronJob time zones, as in the upstream kube-controller-manager main

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // --logging-format=json, as upstream
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics, as upstream
	_ "k8s.io/component-base/metrics/prometheus/version"  // build-info metric, as upstream
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
)

const usage = `usage: cluster <component> [flags]

components:
  apiserver            kube-apiserver
  controller-manager   kube-controller-manager
  scheduler            kube-scheduler
  etcd                 embedded etcd (flags: see "cluster etcd --help")
  kwok                 KWOK controller (simulated nodes and pods)
  kubelet              kubelet of the real node (runs pods through containerd)
  kube-proxy           kube-proxy of the real node (Service addresses, nftables mode)
  kwok-stage-crd       print the CRD of KWOK's Stage objects
  version              print the Kubernetes version
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	component := os.Args[1]
	// Each component parses os.Args[1:] itself (cobra does), so drop the component name and
	// make the program name read like the upstream binary in help texts and logs.
	os.Args = append([]string{filepath.Base(os.Args[0]) + " " + component}, os.Args[2:]...)
	os.Exit(run(component))
}

func run(component string) int {
	switch component {
	case "apiserver", "kube-apiserver":
		return cli.Run(apiserver.NewAPIServerCommand())
	case "controller-manager", "kube-controller-manager":
		return cli.Run(controllermanager.NewControllerManagerCommand())
	case "scheduler", "kube-scheduler":
		return cli.Run(scheduler.NewSchedulerCommand())
	case "etcd":
		return runEtcd(os.Args[1:])
	case "kwok":
		return runKwok()
	case "kubelet":
		return runKubelet()
	case "kube-proxy", "proxy":
		return runKubeProxy()
	case "kwok-stage-crd":
		return printStageCRD()
	case "version":
		fmt.Println(buildVersion())
		return 0
	default:
		fmt.Fprintf(os.Stderr, "unknown component %q\n\n%s", component, usage)
		return 2
	}
}
