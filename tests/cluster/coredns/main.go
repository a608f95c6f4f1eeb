// Command coredns is CoreDNS with only the plugins the real test node needs: cluster DNS for
// Services and pods (kubernetes), and its own health and readiness endpoints.
//
// Upstream's main imports every plugin (cloud DNS providers, etcd, dnstap...); linking the
// handful used here keeps the build to a fraction of upstream's. The Corefile is written by
// tests/cluster/realnode.py.
package main

import (
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"

	"github.com/coredns/coredns/coremain"
)

func main() {
	coremain.Run()
}
