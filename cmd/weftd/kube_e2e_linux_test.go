package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weft-dev/weft/kube/kubetest"
	"github.com/weft-dev/weft/netlab"
)

// kubeAPIIP is the API server's address: on the underlay bridge, in the
// bridge's namespace, where no host runs.
var kubeAPIIP = netip.MustParseAddr("192.0.2.254")

// kubeCluster is a real API server for a topology's hosts.
type kubeCluster struct {
	t    *testing.T
	topo *netlab.Topology
	srv  *kubetest.Server
	// weftKubeconfig authenticates as deploy/kube-weft.yml's service
	// account: weftd runs with exactly the manifest's permissions.
	weftKubeconfig string
}

func startKubeCluster(t *testing.T, topo *netlab.Topology) *kubeCluster {
	t.Helper()
	if topo.BridgeNS == "" {
		t.Fatal("the API server needs the underlay bridge: three hosts or more")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if out, err := topo.Run(ctx, topo.BridgeNS, "ip", "addr", "add", kubeAPIIP.String()+"/24", "dev", "br0"); err != nil {
		t.Fatalf("address for the API server: %v: %s", err, out)
	}
	srv, err := kubetest.Start(ctx, kubetest.Config{NS: topo.BridgeNS, IP: kubeAPIIP, Dir: t.TempDir(), Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("API server and etcd logged:\n%s", srv.Logs())
		}
		srv.Close()
	})
	k := &kubeCluster{t: t, topo: topo, srv: srv}
	k.kubectl("create", "namespace", "kube-weft")
	out := k.kubectl("apply", "--dry-run=server", "-f", filepath.Join("..", "..", "deploy", "kube-weft.yml"))
	t.Logf("kubectl apply --dry-run=server -f deploy/kube-weft.yml:\n%s", out)
	k.kubectl("apply", "-f", filepath.Join("..", "..", "deploy", "kube-weft.yml"))
	token := strings.TrimSpace(string(k.kubectl("create", "token", "weft", "-n", "kube-weft", "--duration", "2h")))
	k.weftKubeconfig = filepath.Join(t.TempDir(), "weft.kubeconfig")
	if err := srv.WriteKubeconfig(k.weftKubeconfig, token); err != nil {
		t.Fatal(err)
	}
	return k
}

func (k *kubeCluster) kubectl(args ...string) []byte {
	k.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := k.srv.Kubectl(ctx, args...)
	if err != nil {
		k.t.Fatal(err)
	}
	return out
}

// createNode creates a Node as a kubelet and the controller manager would
// leave it: its podCIDR assigned, with annotations ann (nil: none at all).
func (k *kubeCluster) createNode(name string, ann map[string]string, cidrs ...string) {
	k.t.Helper()
	n := map[string]any{
		"apiVersion": "v1", "kind": "Node",
		"metadata": map[string]any{"name": name, "annotations": ann},
		"spec":     map[string]any{"podCIDR": cidrs[0], "podCIDRs": cidrs},
	}
	b, _ := json.Marshal(n)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := k.srv.KubectlStdin(ctx, b, "create", "-f", "-"); err != nil {
		k.t.Fatalf("create node %s: %v: %s", name, err, out)
	}
}

type kubeNode struct {
	Metadata struct {
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	Status struct {
		Conditions []struct {
			Type, Status, Reason, Message string
		} `json:"conditions"`
	} `json:"status"`
}

func (k *kubeCluster) node(name string) kubeNode {
	k.t.Helper()
	var n kubeNode
	if err := json.Unmarshal(k.kubectl("get", "node", name, "-o", "json"), &n); err != nil {
		k.t.Fatal(err)
	}
	return n
}

func readKubeTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "flannel-kube", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// startKubeWeftd runs weftd --kube-subnet-mgr on host h as the manifest's
// service account, its Node named after the host: NODE_NAME, as
// flanneld's recording ran, or with viaPod, the node of a pod named
// after the host (POD_NAME and POD_NAMESPACE, as in the DaemonSet). With
// byEnv it is configured as a host moved from flanneld keeps it: every flag
// a FLANNELD_ variable, none on the command line.
func startKubeWeftd(t *testing.T, k *kubeCluster, h netlab.Host, subnetFile string, viaPod, byEnv bool) *daemon {
	t.Helper()
	// The child inherits these at Start.
	if viaPod {
		pod := fmt.Sprintf(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"weft-%s","namespace":"kube-weft"},
			"spec":{"nodeName":%q,"serviceAccountName":"weft","automountServiceAccountToken":false,
			"containers":[{"name":"weftd","image":"weft:latest"}]}}`, h.Name, h.Name)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if out, err := k.srv.KubectlStdin(ctx, []byte(pod), "create", "-f", "-"); err != nil {
			t.Fatalf("create pod: %v: %s", err, out)
		}
		t.Setenv("NODE_NAME", "")
		t.Setenv("POD_NAME", "weft-"+h.Name)
		t.Setenv("POD_NAMESPACE", "kube-weft")
	} else {
		t.Setenv("NODE_NAME", h.Name)
	}
	flags := [][2]string{
		{"kube-subnet-mgr", "true"},
		{"kubeconfig-file", k.weftKubeconfig},
		{"net-config-path", filepath.Join("..", "..", "testdata", "flannel-kube", "net-conf.json")},
		{"public-ip", h.UnderlayIP.String()},
		{"subnet-file", subnetFile},
	}
	var args, environ []string
	for _, f := range flags {
		if byEnv {
			environ = append(environ, "FLANNELD_"+strings.ToUpper(strings.ReplaceAll(f[0], "-", "_"))+"="+f[1])
		} else {
			args = append(args, "--"+f[0]+"="+f[1])
		}
	}
	if byEnv {
		environ = append(os.Environ(), environ...)
	}
	return startWeftdEnv(t, k.topo, h.NS, 19465, environ, args...)
}

func meshOf(topo *netlab.Topology, hosts ...netlab.Host) func() error {
	return func() error {
		for _, a := range hosts {
			for _, b := range hosts {
				if a.Name == b.Name {
					continue
				}
				if out, err := ping(topo, a.PodNS, b.PodIP.String(), 1); err != nil {
					return fmt.Errorf("%s -> %s: %v\n%s", a.PodIP, b.PodIP, err, out)
				}
			}
		}
		return nil
	}
}

// TestKubeSubnetMgr: three hosts run weftd --kube-subnet-mgr against a real
// kube-apiserver (on Debian's etcd); their Nodes, made by the test, carry
// the podCIDRs. h2's Node is as flanneld left it (a node migrated from
// flanneld), h3's has no annotations at all (what makes flanneld panic).
func TestKubeSubnetMgr(t *testing.T) {
	needRoot(t)
	topo := newTopology(t, "kb", 4)
	k := startKubeCluster(t, topo)
	h1, h2, h3, h4 := topo.Hosts[0], topo.Hosts[1], topo.Hosts[2], topo.Hosts[3]
	ttl := map[string]string{"node.alpha.kubernetes.io/ttl": "0"}
	k.createNode(h1.Name, ttl, h1.Subnet.String())
	var flannelH2 kubeNode
	if err := json.Unmarshal(readKubeTestdata(t, "node-h2.json"), &flannelH2); err != nil {
		t.Fatal(err)
	}
	k.createNode(h2.Name, flannelH2.Metadata.Annotations, h2.Subnet.String())
	k.createNode(h3.Name, nil, h3.Subnet.String())
	// Two broken peers: weftd must refuse them by name and go on.
	k.createNode("bad-ip", map[string]string{"flannel.alpha.coreos.com/kube-subnet-manager": "true", "flannel.alpha.coreos.com/public-ip": "192.0.2"}, "100.96.50.0/24")
	k.createNode("v6only", map[string]string{"flannel.alpha.coreos.com/kube-subnet-manager": "true", "flannel.alpha.coreos.com/public-ip": "192.0.2.51"}, "fd00:51::/64")

	files := map[string]string{}
	daemons := map[string]*daemon{}
	for _, h := range []netlab.Host{h1, h2, h3} {
		files[h.Name] = filepath.Join(t.TempDir(), "subnet.env")
	}
	// h1 first: it routes to h2 from flanneld's annotations before weftd
	// replaces flanneld there.
	daemons[h1.Name] = startKubeWeftd(t, k, h1, files[h1.Name], false, false)
	eventually(t, 60*time.Second, "h1 learns h2 from flanneld's annotations", func() error {
		if !strings.Contains(readLog(daemons[h1.Name]), `msg="peer node" node=h2`) {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	// h2, moved from flanneld, keeps flanneld's variables: no flags.
	daemons[h2.Name] = startKubeWeftd(t, k, h2, files[h2.Name], false, true)
	daemons[h3.Name] = startKubeWeftd(t, k, h3, files[h3.Name], false, false)
	eventually(t, 90*time.Second, "full mesh of pings through Node-learned routes", meshOf(topo, h1, h2, h3))

	t.Run("annotations, condition and subnet.env as flanneld's", func(t *testing.T) {
		for i, h := range []netlab.Host{h1, h2} {
			var want kubeNode
			if err := json.Unmarshal(readKubeTestdata(t, fmt.Sprintf("node-h%d.json", i+1)), &want); err != nil {
				t.Fatal(err)
			}
			got := k.node(h.Name)
			if !maps.Equal(got.Metadata.Annotations, want.Metadata.Annotations) {
				t.Errorf("%s annotations:\n%v\nflanneld wrote\n%v", h.Name, got.Metadata.Annotations, want.Metadata.Annotations)
			}
			if len(got.Status.Conditions) != 1 || got.Status.Conditions[0] != want.Status.Conditions[0] {
				t.Errorf("%s conditions %+v, flanneld set %+v", h.Name, got.Status.Conditions, want.Status.Conditions)
			}
			b, err := os.ReadFile(files[h.Name])
			if err != nil {
				t.Fatal(err)
			}
			if ref := readKubeTestdata(t, fmt.Sprintf("subnet-h%d.env", i+1)); string(b) != string(ref) {
				t.Errorf("%s subnet.env:\n%q\nflanneld wrote\n%q", h.Name, b, ref)
			}
		}
		// The Node without annotations got them all.
		got := k.node(h3.Name).Metadata.Annotations
		if got["flannel.alpha.coreos.com/public-ip"] != h3.UnderlayIP.String() || got["flannel.alpha.coreos.com/kube-subnet-manager"] != "true" {
			t.Errorf("h3 annotations %v", got)
		}
	})

	t.Run("migration: h1 kept its route to h2 throughout", func(t *testing.T) {
		log := readLog(daemons[h1.Name])
		if n := strings.Count(log, `msg="peer node" node=h2`); n != 1 {
			t.Errorf("h1 logged h2 as a peer %d times, want once (its route never changed):\n%s", n, log)
		}
		if strings.Contains(log, `msg="peer node deleted" node=h2`) {
			t.Errorf("h1 dropped h2:\n%s", log)
		}
	})

	t.Run("broken Nodes refused by name, weftd running", func(t *testing.T) {
		for _, h := range []netlab.Host{h1, h2, h3} {
			log := readLog(daemons[h.Name])
			for _, want := range []string{`node=bad-ip err="node \"bad-ip\": annotation flannel.alpha.coreos.com/public-ip=\"192.0.2\" is not an IPv4 address"`, `node=v6only err="node \"v6only\": podCIDRs [\"fd00:51::/64\"]: no IPv4 CIDR`} {
				if !strings.Contains(log, want) {
					t.Errorf("%s did not log %s:\n%s", h.Name, want, log)
				}
			}
			select {
			case <-daemons[h.Name].done:
				t.Errorf("weftd on %s exited: %v", h.Name, daemons[h.Name].err)
			default:
			}
		}
	})

	t.Run("a Node added later, then deleted", func(t *testing.T) {
		k.createNode(h4.Name, ttl, h4.Subnet.String())
		added := time.Now()
		daemons[h4.Name] = startKubeWeftd(t, k, h4, filepath.Join(t.TempDir(), "subnet.env"), true, false)
		eventually(t, 60*time.Second, "mesh with h4", meshOf(topo, h1, h2, h3, h4))
		t.Logf("h4 reachable from all %v after its Node was created (weftd start included)", time.Since(added).Round(10*time.Millisecond))
		k.kubectl("delete", "node", h4.Name)
		deleted := time.Now()
		eventually(t, 30*time.Second, "net unreachable for the deleted Node", func() error {
			out, _ := ping(topo, h1.PodNS, h4.PodIP.String(), 1)
			if !strings.Contains(out, "Net Unreachable") {
				return fmt.Errorf("ping still answered or silent:\n%s", out)
			}
			return nil
		})
		t.Logf("route to the deleted Node gone %v after the delete", time.Since(deleted).Round(10*time.Millisecond))
	})

	t.Run("API server stopped 20 s under traffic, no ping lost", func(t *testing.T) {
		type result struct {
			out string
			err error
		}
		done := make(chan result, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			out, err := topo.Run(ctx, h2.PodNS, "ping", "-c", "300", "-i", "0.1", "-W", "2", h3.PodIP.String())
			done <- result{string(out), err}
		}()
		time.Sleep(2 * time.Second)
		k.srv.StopAPIServer()
		time.Sleep(20 * time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
		defer cancel()
		if err := k.srv.StartAPIServer(ctx); err != nil {
			t.Fatal(err)
		}
		r := <-done
		if r.err != nil || !strings.Contains(r.out, "300 received") {
			t.Fatalf("ping %s -> %s across the API server outage: %v\n%s", h2.PodIP, h3.PodIP, r.err, tail(r.out, 3))
		}
		t.Logf("across a 20 s API server outage: %s", tail(r.out, 2))
		eventually(t, 90*time.Second, "every weftd logs the API server back", func() error {
			for _, h := range []netlab.Host{h1, h2, h3} {
				log := readLog(daemons[h.Name])
				if strings.Count(log, "API server unreachable") != 1 || strings.Count(log, "API server reachable again") != 1 {
					return fmt.Errorf("%s: want one 'unreachable' and one 'reachable again':\n%s", h.Name, log)
				}
			}
			return nil
		})
		eventually(t, 30*time.Second, "full mesh after the outage", meshOf(topo, h1, h2, h3))
	})

	t.Run("a pod made by flannel's CNI plugin from weftd's subnet.env", func(t *testing.T) {
		cniPod(t, topo, h1, h2, files[h1.Name])
	})
}

func readLog(d *daemon) string {
	b, _ := os.ReadFile(d.log)
	return string(b)
}

// cniBin is where test/cni/build.sh put the CNI plugins and cnitool.
func cniBin(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("WEFT_CNI_BIN")
	if dir == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			t.Fatal(err)
		}
		dir = filepath.Join(cache, "weft", "cni-v0.9.1")
	}
	for _, b := range []string{"flannel", "bridge", "host-local", "cnitool"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			t.Fatalf("CNI plugins (make test builds them: test/cni/build.sh): %v", err)
		}
	}
	return dir
}

// cniPod makes a pod on host h with flannel's CNI plugin (delegating to
// bridge and host-local), reading the subnet.env weftd wrote, and pings it
// from other's pod and back. The bench's own pod on h is taken away first:
// its gateway holds the address the CNI bridge takes.
func cniPod(t *testing.T, topo *netlab.Topology, h, other netlab.Host, subnetFile string) {
	bin := cniBin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if out, err := topo.Run(ctx, h.NS, "ip", "link", "del", h.HostPodDev); err != nil {
		t.Fatalf("remove the bench pod: %v: %s", err, out)
	}
	podNS := topo.Config.Prefix + "-cni"
	if out, err := exec.CommandContext(ctx, "ip", "netns", "add", podNS).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	network := "weft-" + topo.Config.Prefix
	dir := t.TempDir()
	conf := fmt.Sprintf(`{"cniVersion":"0.3.1","name":%q,"plugins":[{"type":"flannel","subnetFile":%q,"dataDir":%q,
		"delegate":{"isDefaultGateway":true,"hairpinMode":true}}]}`, network, subnetFile, filepath.Join(dir, "flannel"))
	if err := os.WriteFile(filepath.Join(dir, network+".conflist"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cnitool := func(ctx context.Context, op string) ([]byte, error) {
		cmd := topo.Command(ctx, h.NS, filepath.Join(bin, "cnitool"), op, network, "/var/run/netns/"+podNS)
		cmd.Env = append(os.Environ(), "CNI_PATH="+bin, "NETCONFPATH="+dir)
		return cmd.CombinedOutput()
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if out, err := cnitool(ctx, "del"); err != nil {
			t.Errorf("cnitool del: %v\n%s", err, out)
		}
		exec.Command("ip", "netns", "del", podNS).Run()
		os.RemoveAll(filepath.Join("/var/lib/cni/networks", network)) // host-local's leases
	})
	out, err := cnitool(ctx, "add")
	if err != nil {
		t.Fatalf("cnitool add: %v\n%s", err, out)
	}
	var res struct {
		IPs []struct{ Address string } `json:"ips"`
	}
	if err := json.Unmarshal(out, &res); err != nil || len(res.IPs) == 0 {
		t.Fatalf("cnitool add printed %s (%v)", out, err)
	}
	p, err := netip.ParsePrefix(res.IPs[0].Address)
	if err != nil || !h.Subnet.Contains(p.Addr()) {
		t.Fatalf("the CNI pod got %s, outside %s", res.IPs[0].Address, h.Subnet)
	}
	t.Logf("CNI pod on %s: %s", h.Name, p)
	eventually(t, 30*time.Second, "ping from another node's pod to the CNI pod and back", func() error {
		if out, err := ping(topo, other.PodNS, p.Addr().String(), 1); err != nil {
			return fmt.Errorf("%s -> %s: %v\n%s", other.PodIP, p.Addr(), err, out)
		}
		if out, err := ping(topo, podNS, other.PodIP.String(), 1); err != nil {
			return fmt.Errorf("%s -> %s: %v\n%s", p.Addr(), other.PodIP, err, out)
		}
		return nil
	})
}
