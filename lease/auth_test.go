package lease

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
)

type certFiles struct{ ca, serverCert, serverKey, clientCert, clientKey string }

// writeCerts makes a CA, a server certificate for 127.0.0.1 and a client
// certificate, as PEM files in dir.
func writeCerts(t *testing.T, dir string) certFiles {
	t.Helper()
	key := func() *ecdsa.PrivateKey {
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
	now := time.Now()
	caKey := key()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "weft test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leaf := func(name string, serial int64, usage x509.ExtKeyUsage) (string, string) {
		k := key()
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return write(name+".pem", "CERTIFICATE", der), write(name+"-key.pem", "EC PRIVATE KEY", kder)
	}
	f := certFiles{ca: write("ca.pem", "CERTIFICATE", caDER)}
	f.serverCert, f.serverKey = leaf("etcd-server", 2, x509.ExtKeyUsageServerAuth)
	f.clientCert, f.clientKey = leaf("weft-client", 3, x509.ExtKeyUsageClientAuth)
	return f
}

// TestTLSAndPassword: etcd with client-certificate TLS and user/password auth,
// reached with flanneld's --etcd-cafile/--etcd-certfile/--etcd-keyfile and
// --etcd-username/--etcd-password.
func TestTLSAndPassword(t *testing.T) {
	certs := writeCerts(t, t.TempDir())
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	e, err := StartEtcd(ctx, EtcdOptions{
		Dir:       filepath.Join(t.TempDir(), "etcd"),
		ClientURL: "https://127.0.0.1:0",
		Logger:    testLogger(t),
		tweak: func(c *embed.Config) {
			fastEtcd(c)
			c.ClientTLSInfo = transport.TLSInfo{
				CertFile: certs.serverCert, KeyFile: certs.serverKey,
				TrustedCAFile: certs.ca, ClientCertAuth: true,
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)

	tlsOpts := func() Options {
		o := testOptions(t, e.ClientURL())
		o.CAFile, o.CertFile, o.KeyFile = certs.ca, certs.clientCert, certs.clientKey
		o.RequestTimeout = time.Second
		return o
	}
	// Set up as an operator would: the config, a root user, auth on.
	admin := openRegistry(t, tlsOpts())
	mustPut(t, admin.cli, admin.configKey(), testConfig)
	for _, step := range []func() error{
		func() error { _, err := admin.cli.UserAdd(t.Context(), "root", "rootpw"); return err },
		func() error { _, err := admin.cli.UserGrantRole(t.Context(), "root", "root"); return err },
		func() error { _, err := admin.cli.AuthEnable(t.Context()); return err },
	} {
		if err := step(); err != nil {
			t.Fatalf("enable auth: %v", err)
		}
	}

	o := tlsOpts()
	o.Username, o.Password = "root", "rootpw"
	r := openRegistry(t, o)
	if c, err := r.Config(t.Context()); err != nil || c.Network != pfx("100.96.0.0/16") {
		t.Errorf("with TLS and a password: %+v, %v", c, err)
	}

	o.Password = "wrong"
	if r, err := Open(o); err == nil {
		r.Close()
		t.Error("Open with a wrong password succeeded")
	}

	// The certificate alone names a user (its CN) that does not exist.
	if _, err := openRegistry(t, tlsOpts()).Config(t.Context()); err == nil {
		t.Error("Config without a password succeeded")
	}

	// Without a client certificate the TLS handshake fails; without our CA
	// the server's certificate is not trusted. Either is a refusal that
	// WaitConfig returns at once, saying so, instead of waiting it out as
	// an outage (etcd's client reports both as a deadline exceeded).
	noCert, noCA := tlsOpts(), tlsOpts()
	noCert.CertFile, noCert.KeyFile = "", ""
	noCA.CAFile = ""
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"without a client certificate", noCert, "remote error: tls"},
		{"without the CA", noCA, "certificate signed by unknown authority"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := openRegistry(t, tc.o)
			if _, err := r.Config(t.Context()); err == nil {
				t.Fatal("Config succeeded")
			}
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			_, err := r.WaitConfig(ctx)
			if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "--etcd-certfile") {
				t.Fatalf("WaitConfig: %v; want a refusal saying %q", err, tc.want)
			}
			t.Logf("WaitConfig: %v", err)
		})
	}
}
