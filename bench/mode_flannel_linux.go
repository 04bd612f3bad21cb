package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// flannel's udp backend as the README of testdata/flannel records it:
// etcd at h1's underlay address holding the network config, each host's
// subnet file seeded with its subnet so that flanneld takes that one back
// (its "previous subnet") and the pods' addresses stay put.
const (
	flannelEtcdPort = 2379
	flannelPrefix   = "/coreos.com/network"
	flannelConfig   = `{"Network":"100.96.0.0/16","SubnetLen":24,"Backend":{"Type":"udp","Port":8285}}`
	etcdReadyWait   = 30 * time.Second
)

var flannelMode = Mode{
	Name:   "flannel",
	About:  "real flanneld, udp backend, against an embedded etcd (needs --flanneld PATH)",
	PodMTU: weftTunMTU,
	Available: func(env *Env) error {
		if env.Flanneld == "" {
			return errors.New("no --flanneld PATH given")
		}
		if len(env.EtcdCommand) == 0 {
			return errors.New("no embedded etcd command")
		}
		return executable(env.Flanneld, "--flanneld")
	},
	Setup: setupFlannel,
}

func setupFlannel(ctx context.Context, env *Env, dp *Dataplane) error {
	podEndpoints(env.Topo, dp)
	t := env.Topo
	h1 := t.Hosts[0]
	etcdURL := fmt.Sprintf("http://%s:%d", h1.UnderlayIP, flannelEtcdPort)

	// A fresh etcd per round: no lease of an earlier round can linger.
	data, err := os.MkdirTemp(env.Dir, "etcd-")
	if err != nil {
		return err
	}
	dp.onClose(func(context.Context) error { return os.RemoveAll(data) })
	args := append(append([]string(nil), env.EtcdCommand...),
		"--listen", etcdURL, "--dir", data, "--put", flannelPrefix+"/config="+flannelConfig)
	etcd, err := startDaemon(ctx, t, h1.NS, env.Dir, "etcd", args...)
	if err != nil {
		return err
	}
	dp.onClose(func(context.Context) error { return etcd.stop() })
	if err := waitLogLine(ctx, etcd, etcdReadyLine, etcdReadyWait); err != nil {
		return err
	}

	for _, h := range t.Hosts {
		subnetFile := filepath.Join(env.Dir, "flannel-"+h.Name+".env")
		seed := fmt.Sprintf("FLANNEL_NETWORK=%s\nFLANNEL_SUBNET=%s/%d\nFLANNEL_MTU=%d\nFLANNEL_IPMASQ=false\n",
			t.Network, h.PodGateway, h.Subnet.Bits(), weftTunMTU)
		if err := os.WriteFile(subnetFile, []byte(seed), 0o644); err != nil {
			return err
		}
		d, err := startDaemon(ctx, t, h.NS, env.Dir, "flanneld-"+h.Name, env.Flanneld,
			"--etcd-endpoints="+etcdURL, "--etcd-prefix="+flannelPrefix,
			"--iface="+h.UnderlayDev, "--public-ip="+h.UnderlayIP.String(),
			"--ip-masq=false", "--iptables-forward-rules=false",
			"--subnet-file="+subnetFile, "-v=1")
		if err != nil {
			return err
		}
		dp.addDaemon(d)
	}
	return nil
}

// waitLogLine waits until d's log holds line, d exits, or timeout passes.
func waitLogLine(ctx context.Context, d *daemon, line string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if b, err := os.ReadFile(d.log); err == nil && strings.Contains(string(b), line) {
			return nil
		}
		if ok, err := d.exited(); ok {
			return fmt.Errorf("%s exited (%s)%s", d.name, exitDesc(err), d.logTail())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: no %q after %v%s", d.name, line, timeout, d.logTail())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
