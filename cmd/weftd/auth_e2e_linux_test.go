package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/weft-dev/weft/netlab"
)

// authCerts are the PEM files authWriteCerts makes. The member mode of the
// test binary reads ca.pem, server.pem and server-key.pem from the same
// directory (see runEtcdMember).
type authCerts struct {
	ca, clientCert, clientKey string
	// A client certificate signed by another CA, which etcd must refuse.
	rogueCert, rogueKey string
}

// authWriteCerts makes in dir a CA, a server certificate for serverIP signed
// by it, a client certificate signed by it, and a client certificate signed
// by a second, unrelated CA.
func authWriteCerts(t *testing.T, dir string, serverIP netip.Addr) authCerts {
	t.Helper()
	now := time.Now()
	serial := int64(0)
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// sign makes a certificate for tmpl's subject, issued by parent (itself
	// when parent is nil), and returns it parsed with its key.
	sign := func(tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
		serial++
		tmpl.SerialNumber = big.NewInt(serial)
		tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Hour), now.Add(time.Hour)
		k := newKey()
		if parent == nil {
			parent, parentKey = tmpl, k
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &k.PublicKey, parentKey)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c, k, der
	}
	newCA := func(cn string) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
		return sign(&x509.Certificate{
			Subject: pkix.Name{CommonName: cn}, IsCA: true, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		}, nil, nil)
	}
	leaf := func(name, cn string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, usage x509.ExtKeyUsage, ips ...net.IP) (string, string) {
		_, k, der := sign(&x509.Certificate{
			Subject: pkix.Name{CommonName: cn}, KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips,
		}, ca, caKey)
		kder, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return write(name+".pem", "CERTIFICATE", der), write(name+"-key.pem", "EC PRIVATE KEY", kder)
	}
	ca, caKey, caDER := newCA("weft test CA")
	certs := authCerts{ca: write("ca.pem", "CERTIFICATE", caDER)}
	leaf("server", "etcd "+serverIP.String(), ca, caKey, x509.ExtKeyUsageServerAuth, serverIP.AsSlice())
	certs.clientCert, certs.clientKey = leaf("client", "weft-client", ca, caKey, x509.ExtKeyUsageClientAuth)
	rogue, rogueKey, _ := newCA("some other CA")
	certs.rogueCert, certs.rogueKey = leaf("rogue", "weft-client", rogue, rogueKey, x509.ExtKeyUsageClientAuth)
	return certs
}

// authStartMember runs a single etcd member (the test binary in member
// mode) in ns, serving clientURL with TLS from tlsDir and plainURL without.
// It is stopped, by its PID, when the test ends.
func authStartMember(t *testing.T, topo *netlab.Topology, ns string, ip netip.Addr, clientURL, plainURL, tlsDir string) {
	t.Helper()
	peer := fmt.Sprintf("http://%s:2380", ip)
	spec := fmt.Sprintf("m1 %s %s %s", filepath.Join(t.TempDir(), "etcd"), clientURL, peer)
	cmd := topo.Command(context.Background(), ns, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "WEFT_TEST_ETCD_MEMBER="+spec, "WEFT_TEST_ETCD_CLUSTER=m1="+peer,
		"WEFT_TEST_ETCD_TLS="+tlsDir, "WEFT_TEST_ETCD_PLAIN_URL="+plainURL)
	startLogged(t, cmd, "etcd member")
}

// authClient connects from the test to endpoint, dialling inside ns, with
// tlsc (nil: plain) and a user (empty: none).
func authClient(t *testing.T, ns, endpoint string, tlsc *tls.Config, user, password string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{endpoint},
		DialTimeout: 10 * time.Second,
		TLS:         tlsc,
		Username:    user,
		Password:    password,
		Logger:      zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(func(ctx context.Context, addr string) (c net.Conn, err error) {
			err = inNS(ns, func() (derr error) {
				c, derr = (&net.Dialer{}).DialContext(ctx, "tcp", addr)
				return derr
			})
			return c, err
		})},
	})
	if err != nil {
		t.Fatalf("etcd client for %s: %v", endpoint, err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// authTLSConfig is what an operator's etcdctl would use: our CA and the
// client certificate it signed.
func authTLSConfig(t *testing.T, c authCerts) *tls.Config {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(c.clientCert, c.clientKey)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(c.ca)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(b)
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: roots, MinVersion: tls.VersionTLS12}
}

// authLogLine returns the first line of d's log holding sub, or "".
func authLogLine(d *daemon, sub string) string {
	b, _ := os.ReadFile(d.log)
	for line := range strings.Lines(string(b)) {
		if strings.Contains(line, sub) {
			return strings.TrimSpace(line)
		}
	}
	return ""
}

// authRefusal is what a test expects of a weftd that etcd must refuse: it
// exits non-zero at start and a line of its log names the cause, holding
// one of cause.
type authRefusal struct {
	name  string
	args  []string
	cause []string
}

// authRefused starts weftd on host h with r.args and checks r (see
// authRefusal). A refused weftd must never hold a lease, and its log must
// show a warning or an error.
// The returned func waits for the verdict; call it after the positive case
// running meanwhile is done.
func authRefused(t *testing.T, topo *netlab.Topology, h netlab.Host, port int, r authRefusal) (check func()) {
	t.Helper()
	args := append([]string{"--public-ip", h.UnderlayIP.String(),
		"--subnet-file", filepath.Join(t.TempDir(), "subnet.env"),
		// Its own device, port and metrics address, beside the weftd of
		// the positive case in the same namespace.
		"--tun-name", fmt.Sprintf("weftneg%d", port), "--port", fmt.Sprint(port)}, r.args...)
	d := startWeftd(t, topo, h.NS, port, args...)
	started := time.Now()
	// settled is closed once weftd has exited, or has logged something and
	// gone on for 3 s more (it retries rather than exits: more waiting
	// would show no more), or at the latest 15 s after start.
	settled := make(chan struct{})
	go func() {
		defer close(settled)
		deadline, shown := started.Add(15*time.Second), false
		for time.Now().Before(deadline) {
			select {
			case <-d.done:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if !shown && authLogLine(d, "level=") != "" {
				shown = true
				if next := time.Now().Add(3 * time.Second); next.Before(deadline) {
					deadline = next
				}
			}
		}
	}()
	return func() {
		t.Helper()
		<-settled
		exited := false
		select {
		case <-d.done:
			exited = true
		default:
		}
		b, _ := os.ReadFile(d.log)
		log := strings.TrimSpace(string(b))
		if line := authLogLine(d, "subnet lease held"); line != "" {
			t.Errorf("%s: weftd got a lease: %s", r.name, line)
		}
		if !strings.Contains(log, "level=WARN") && !strings.Contains(log, "level=ERROR") && !strings.Contains(log, "panic:") {
			t.Errorf("%s: nothing in weftd's log says that etcd refused it:\n%s", r.name, authIndent(log))
		}
		var problems []string
		var ee *exec.ExitError
		switch {
		case !exited:
			problems = append(problems, fmt.Sprintf("still running %v after start", time.Since(started).Round(time.Second)))
		case !errors.As(d.err, &ee) || ee.ExitCode() == 0:
			problems = append(problems, fmt.Sprintf("ended with %v, not non-zero", d.err))
		}
		if strings.Contains(log, "panic:") {
			problems = append(problems, "it panicked")
		}
		var line string
		for _, c := range r.cause {
			if line == "" {
				line = authLogLine(d, c)
			}
		}
		if line == "" {
			problems = append(problems, fmt.Sprintf("no log line names the cause (one of %q)", r.cause))
		}
		if !exited {
			err := d.stop(10 * time.Second)
			b, _ := os.ReadFile(d.log)
			if strings.Contains(string(b), "panic:") && !strings.Contains(log, "panic:") {
				problems = append(problems, fmt.Sprintf("on SIGTERM while waiting for etcd it panicked (%v)", err))
			}
			log = strings.TrimSpace(string(b))
		}
		if len(problems) == 0 {
			t.Logf("%s: weftd refused at start (%v), it logged:\n  %s", r.name, d.err, line)
		} else {
			t.Errorf("%s: %s; weftd logged:\n%s", r.name, strings.Join(problems, "; "), authIndent(log))
		}
	}
}

func authIndent(s string) string {
	if s == "" {
		return "  (nothing)"
	}
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}

// TestAuthEtcdTLSAndPassword checks that weftd reaches an etcd that
// requires (a) TLS with client certificates, (b) a user and password, and
// (c) both, with flanneld's flags; two hosts lease subnets there and their
// pods ping each other through the overlay. weftd with no client
// certificate, with one from another CA, or with a wrong password never gets
// a lease, and should exit at start naming the cause.
//
// One etcd member, in the first host's namespace, serves https:// (client
// certificates required) and plain http:// on another port; user and
// password auth is turned on between the phases.
func TestAuthEtcdTLSAndPassword(t *testing.T) {
	needRoot(t)
	topo := newTopology(t, "au", 2)
	h1, h2 := topo.Hosts[0], topo.Hosts[1]
	tlsDir := t.TempDir()
	certs := authWriteCerts(t, tlsDir, h1.UnderlayIP)
	httpsURL := fmt.Sprintf("https://%s:2379", h1.UnderlayIP)
	plainURL := fmt.Sprintf("http://%s:2381", h1.UnderlayIP)
	authStartMember(t, topo, h1.NS, h1.UnderlayIP, httpsURL, plainURL, tlsDir)

	// Bounds every request of the test's own etcd clients (the first
	// weftd started also waits for the build of weftd).
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	admin := authClient(t, h1.NS, httpsURL, authTLSConfig(t, certs), "", "")
	eventually(t, 20*time.Second, "the TLS etcd takes the network config", func() error {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := admin.Put(c, "/coreos.com/network/config", `{"Network":"100.96.0.0/16","SubnetLen":24,"Backend":{"Type":"udp","Port":8285}}`)
		return err
	})

	// pair runs weftd on both hosts with extra flags, checks that their
	// pods ping each other through the overlay and stops both.
	pair := func(t *testing.T, extra ...string) {
		t.Helper()
		start := time.Now()
		var ds []*daemon
		for _, h := range topo.Hosts {
			args := append([]string{"--public-ip", h.UnderlayIP.String(), "--subnet-file", seedSubnetFile(t, h)}, extra...)
			ds = append(ds, startWeftd(t, topo, h.NS, 19465, args...))
		}
		eventually(t, 30*time.Second, "ping between the pods", func() error {
			if out, err := ping(topo, h1.PodNS, h2.PodIP.String(), 1); err != nil {
				return fmt.Errorf("%s -> %s: %v\n%s", h1.PodIP, h2.PodIP, err, out)
			}
			return nil
		})
		out, err := ping(topo, h2.PodNS, h1.PodIP.String(), 3)
		if err != nil {
			t.Fatalf("ping %s -> %s: %v\n%s", h2.PodIP, h1.PodIP, err, out)
		}
		for _, d := range ds {
			t.Logf("%s: %s", d.ns, authLogLine(d, "subnet lease held"))
		}
		t.Logf("%s -> %s: %s (%v after start)", h2.PodIP, h1.PodIP, tail(out, 2), time.Since(start).Round(time.Millisecond))
		for _, d := range ds {
			if err := d.stop(10 * time.Second); err != nil {
				t.Errorf("weftd in %s ended with %v", d.ns, err)
			}
		}
	}
	tlsFlags := []string{"--etcd-endpoints", httpsURL, "--etcd-cafile", certs.ca, "--etcd-certfile", certs.clientCert, "--etcd-keyfile", certs.clientKey}

	t.Run("a: TLS with client certificates", func(t *testing.T) {
		noCert := authRefused(t, topo, h2, 19471, authRefusal{
			name:  "no client certificate",
			args:  []string{"--etcd-endpoints", httpsURL, "--etcd-cafile", certs.ca},
			cause: []string{"certificate required"},
		})
		rogue := authRefused(t, topo, h2, 19472, authRefusal{
			name: "client certificate from another CA",
			args: []string{"--etcd-endpoints", httpsURL, "--etcd-cafile", certs.ca,
				"--etcd-certfile", certs.rogueCert, "--etcd-keyfile", certs.rogueKey},
			// Go's TLS client sends no certificate that the server's list
			// of accepted CAs rules out, so etcd sees none: "certificate
			// required", as without one.
			cause: []string{"certificate required", "unknown certificate authority", "bad certificate"},
		})
		pair(t, tlsFlags...)
		noCert()
		rogue()
	})
	if t.Failed() {
		return
	}

	// Delete phase a's leases so that the next weftds acquire anew, which
	// needs the role's write permission.
	if _, err := admin.Delete(ctx, "/coreos.com/network/subnets/", clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	// As an operator would with etcdctl: root, a role for weft's prefix
	// only, a user weft with it, auth on.
	const prefix = "/coreos.com/network/"
	for _, step := range []struct {
		what string
		do   func() error
	}{
		{"add user root", func() error { _, err := admin.UserAdd(ctx, "root", "root-pw"); return err }},
		{"grant root the root role", func() error { _, err := admin.UserGrantRole(ctx, "root", "root"); return err }},
		{"add role weft", func() error { _, err := admin.RoleAdd(ctx, "weft"); return err }},
		{"grant role weft readwrite on " + prefix, func() error {
			_, err := admin.RoleGrantPermission(ctx, "weft", prefix, clientv3.GetPrefixRangeEnd(prefix), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		}},
		{"add user weft", func() error { _, err := admin.UserAdd(ctx, "weft", "weft-pw"); return err }},
		{"grant user weft role weft", func() error { _, err := admin.UserGrantRole(ctx, "weft", "weft"); return err }},
		{"enable auth", func() error { _, err := admin.AuthEnable(ctx); return err }},
	} {
		if err := step.do(); err != nil {
			t.Fatalf("%s: %v", step.what, err)
		}
	}
	root := authClient(t, h1.NS, plainURL, nil, "root", "root-pw")

	t.Run("b: user and password", func(t *testing.T) {
		wrong := authRefused(t, topo, h2, 19473, authRefusal{
			name:  "wrong password",
			args:  []string{"--etcd-endpoints", plainURL, "--etcd-username", "weft", "--etcd-password", "not-weft-pw"},
			cause: []string{"authentication failed"},
		})
		pair(t, "--etcd-endpoints", plainURL, "--etcd-username", "weft", "--etcd-password", "weft-pw")
		wrong()
	})

	t.Run("c: TLS and password", func(t *testing.T) {
		if _, err := root.Delete(ctx, "/coreos.com/network/subnets/", clientv3.WithPrefix()); err != nil {
			t.Fatal(err)
		}
		pair(t, append(tlsFlags, "--etcd-username", "weft", "--etcd-password", "weft-pw")...)
	})
}
