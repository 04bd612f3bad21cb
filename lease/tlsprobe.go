package lease

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"
)

// tlsRefusal dials each https endpoint and reports the first that refuses
// this client's TLS, or whose certificate this client refuses; an endpoint
// out of reach refuses nothing. etcd's client turns both into "context
// deadline exceeded", which looks like an outage and would be retried for
// ever.
func tlsRefusal(ctx context.Context, endpoints []string, cfg *tls.Config) error {
	for _, ep := range endpoints {
		u, err := url.Parse(ep)
		if err != nil || u.Scheme != "https" {
			continue
		}
		if err := probeTLS(ctx, u.Host, cfg); err != nil {
			return fmt.Errorf("etcd %s: %w (check --etcd-cafile, --etcd-certfile and --etcd-keyfile)", ep, err)
		}
	}
	return nil
}

// probeTLS shakes hands with addr and reads once: with TLS 1.3 a server
// refuses a client certificate (or its absence) only after the handshake,
// with an alert. It returns an error only for a refusal; a server that
// waits for the client to speak (as gRPC does) has accepted it.
func probeTLS(ctx context.Context, addr string, cfg *tls.Config) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	raw, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil // out of reach: an outage, not a refusal
	}
	defer raw.Close()
	c := cfg.Clone()
	if c.ServerName == "" {
		host, _, _ := net.SplitHostPort(addr)
		c.ServerName = host
	}
	conn := tls.Client(raw, c)
	deadline, _ := ctx.Deadline()
	conn.SetDeadline(deadline)
	err = conn.HandshakeContext(ctx)
	if err == nil {
		conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		_, err = conn.Read(make([]byte, 1))
	}
	if isTLSRefusal(err) {
		return err
	}
	return nil
}

// isTLSRefusal reports whether err is one side refusing the other's TLS:
// an alert from the server, or a server certificate that does not verify.
func isTLSRefusal(err error) bool {
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "remote error" {
		return true // an alert: "tls: certificate required", "bad certificate"
	}
	var verr *tls.CertificateVerificationError
	var uerr x509.UnknownAuthorityError
	var herr x509.HostnameError
	var cerr x509.CertificateInvalidError
	return errors.As(err, &verr) || errors.As(err, &uerr) || errors.As(err, &herr) || errors.As(err, &cerr)
}
