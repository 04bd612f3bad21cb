// Package kubetest runs a real Kubernetes API server for tests: Debian's etcd
// (3.4) and a kube-apiserver built from k8s.io/kubernetes (see
// test/kube-apiserver/build.sh), both inside a network namespace the test
// made, with serving certificates and a token file the package makes itself.
package kubetest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// Version is the Kubernetes release the tests run against, as flanneld's
// recordings in testdata/flannel-kube were made.
const Version = "v1.37.2"

// ServiceRange is the API server's --service-cluster-ip-range: a range set
// aside for documentation, so that nothing the tests make collides with a
// real network.
const ServiceRange = "198.51.100.0/24"

// BinaryPath is where the kube-apiserver binary is: $WEFT_KUBE_APISERVER, else
// the cache build.sh writes to.
func BinaryPath() (string, error) {
	if p := os.Getenv("WEFT_KUBE_APISERVER"); p != "" {
		return p, nil
	}
	dir := os.Getenv("XDG_CACHE_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(home, ".cache")
	}
	return filepath.Join(dir, "weft", "kube-apiserver-"+Version), nil
}

// Config says where the API server runs.
type Config struct {
	NS   string     // network namespace etcd and the API server run in
	IP   netip.Addr // address in NS the API server serves on (port 6443)
	Dir  string     // for certificates, tokens, etcd's data and logs
	Logf func(format string, args ...any)
}

// Server is a running etcd and kube-apiserver.
type Server struct {
	cfg        Config
	bin        string
	Kubeconfig string // admin kubeconfig: https://IP:6443, token, CA
	URL        string
	caPEM      []byte

	etcd, api *proc
}

type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

// Start runs etcd and the API server in cfg.NS and waits until /readyz
// answers. Stop them with Close.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	bin, err := BinaryPath()
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("kube-apiserver %s: %w (make test builds it: test/kube-apiserver/build.sh)", Version, err)
	}
	if _, err := exec.LookPath("etcd"); err != nil {
		return nil, fmt.Errorf("etcd (Debian's etcd-server): %w", err)
	}
	s := &Server{cfg: cfg, bin: bin, URL: "https://" + netip.AddrPortFrom(cfg.IP, 6443).String()}
	if err := s.writeFiles(); err != nil {
		return nil, err
	}
	s.etcd, err = s.run("etcd", "etcd", "--data-dir", filepath.Join(cfg.Dir, "etcd"),
		"--listen-client-urls", "http://127.0.0.1:2379", "--advertise-client-urls", "http://127.0.0.1:2379",
		"--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
		"--initial-cluster", "default=http://127.0.0.1:2380", "--log-level", "warn")
	if err != nil {
		return nil, err
	}
	if err := s.StartAPIServer(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// StartAPIServer (re)starts the API server, on the same etcd, and waits for
// it to be ready.
func (s *Server) StartAPIServer(ctx context.Context) error {
	d := s.cfg.Dir
	var err error
	s.api, err = s.run("kube-apiserver", s.bin,
		"--etcd-servers", "http://127.0.0.1:2379",
		"--bind-address", s.cfg.IP.String(), "--advertise-address", s.cfg.IP.String(), "--secure-port", "6443",
		"--tls-cert-file", filepath.Join(d, "serving.crt"), "--tls-private-key-file", filepath.Join(d, "serving.key"),
		"--token-auth-file", filepath.Join(d, "tokens.csv"),
		"--authorization-mode", "RBAC",
		"--service-cluster-ip-range", ServiceRange,
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", filepath.Join(d, "sa.key"),
		"--service-account-signing-key-file", filepath.Join(d, "sa.key"),
		"--allow-privileged=true",
		"--v=1")
	if err != nil {
		return err
	}
	return s.waitReady(ctx)
}

// StopAPIServer stops the API server (SIGTERM, SIGKILL after 10 s); etcd
// stays.
func (s *Server) StopAPIServer() { s.api.stop() }

// Close stops both.
func (s *Server) Close() {
	if s.api != nil {
		s.api.stop()
	}
	if s.etcd != nil {
		s.etcd.stop()
	}
}

// Logs returns the end of both logs, for a failed test.
func (s *Server) Logs() string {
	var b bytes.Buffer
	for _, p := range []*proc{s.etcd, s.api} {
		if p == nil {
			continue
		}
		out, _ := os.ReadFile(p.log)
		if len(out) > 4000 {
			out = out[len(out)-4000:]
		}
		fmt.Fprintf(&b, "== %s\n%s\n", p.log, out)
	}
	return b.String()
}

// Kubectl runs kubectl as admin inside the namespace.
func (s *Server) Kubectl(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", s.cfg.NS, "kubectl", "--kubeconfig", s.Kubeconfig}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("kubectl %v: %w: %s", args, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

// KubectlStdin is Kubectl with in on its standard input (apply -f -).
func (s *Server) KubectlStdin(ctx context.Context, in []byte, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", s.cfg.NS, "kubectl", "--kubeconfig", s.Kubeconfig}, args...)...)
	cmd.Stdin = bytes.NewReader(in)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("kubectl %v: %w: %s", args, err, bytes.TrimSpace(out))
	}
	return out, nil
}

func (s *Server) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	var err error
	for {
		var out []byte
		out, err = s.Kubectl(ctx, "get", "--raw", "/readyz")
		if err == nil && bytes.Equal(bytes.TrimSpace(out), []byte("ok")) {
			return nil
		}
		select {
		case <-s.api.done:
			return fmt.Errorf("kube-apiserver exited before it was ready:\n%s", s.Logs())
		case <-ctx.Done():
			return fmt.Errorf("kube-apiserver not ready: %v\n%s", err, s.Logs())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (s *Server) run(name, bin string, args ...string) (*proc, error) {
	p := &proc{done: make(chan struct{}), log: filepath.Join(s.cfg.Dir, name+".log")}
	logf, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", s.cfg.NS, bin}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { p.cmd.Wait(); logf.Close(); close(p.done) }()
	if s.cfg.Logf != nil {
		s.cfg.Logf("started %s in %s, pid %d", name, s.cfg.NS, p.cmd.Process.Pid)
	}
	return p, nil
}

// stop ends the process by its PID: ip netns exec execs the program, so the
// PID is the server's own.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// writeFiles makes a CA, a serving certificate for IP, the service-account
// key, the token file and the admin kubeconfig.
func (s *Server) writeFiles() error {
	d := s.cfg.Dir
	if err := os.MkdirAll(d, 0o700); err != nil {
		return err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "weft test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, _ := x509.ParseCertificate(caDER)
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kube-apiserver"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{s.cfg.IP.AsSlice(), net.IPv4(127, 0, 0, 1), net.IPv4(198, 51, 100, 1)},
		DNSNames:    []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "localhost"},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	srvKeyDER, err := x509.MarshalPKCS8PrivateKey(srvKey)
	if err != nil {
		return err
	}
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	saDER, err := x509.MarshalPKCS8PrivateKey(saKey)
	if err != nil {
		return err
	}
	tok := make([]byte, 16)
	if _, err := rand.Read(tok); err != nil {
		return err
	}
	token := fmt.Sprintf("%x", tok)
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	files := map[string][]byte{
		"ca.crt":      caPEM,
		"serving.crt": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srvDER}),
		"serving.key": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: srvKeyDER}),
		"sa.key":      pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: saDER}),
		// token,user,uid,"groups": system:masters may do anything.
		"tokens.csv": fmt.Appendf(nil, "%s,admin,admin,\"system:masters\"\n", token),
		"kubeconfig": kubeconfig(s.URL, caPEM, token),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(d, name), b, 0o600); err != nil {
			return err
		}
	}
	s.Kubeconfig = filepath.Join(d, "kubeconfig")
	s.caPEM = caPEM
	return nil
}

// WriteKubeconfig writes a kubeconfig for this server that authenticates
// with token (a service account's, from kubectl create token).
func (s *Server) WriteKubeconfig(path, token string) error {
	return os.WriteFile(path, kubeconfig(s.URL, s.caPEM, token), 0o600)
}

func kubeconfig(server string, caPEM []byte, token string) []byte {
	return fmt.Appendf(nil, `apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: admin
  user:
    token: %s
contexts:
- name: test
  context: {cluster: test, user: admin}
current-context: test
`, server, base64.StdEncoding.EncodeToString(caPEM), token)
}
