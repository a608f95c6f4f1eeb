package main

import (
	"context"

	"k8s.io/component-base/cli"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
)

// The real node's agents: the kubelet runs real pods through containerd, kube-proxy programs
// Service addresses in nftables. They share client-go and apimachinery with the control plane,
// so linking them here costs far less than a second binary would.

// The kubelet handles its own signals (as upstream's main, which passes a background context).
func runKubelet() int {
	return cli.Run(kubelet.NewKubeletCommand(context.Background()))
}

func runKubeProxy() int {
	return cli.Run(proxy.NewProxyCommand())
}
