package main

import (
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
)

// TestMain lets the test binary double as one etcd member, run inside a
// host namespace by `ip netns exec` (an etcd inside the test process would
// listen and dial in the test's own namespace).
func TestMain(m *testing.M) {
	if spec := os.Getenv("WEFT_TEST_ETCD_MEMBER"); spec != "" {
		if err := runEtcdMember(spec); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runEtcdMember runs the member NAME,DIR,CLIENT-URL,PEER-URL of the cluster
// in WEFT_TEST_ETCD_CLUSTER until SIGTERM; it prints "ready" once it serves.
//
// Optional, for the auth tests: WEFT_TEST_ETCD_TLS names a directory holding
// ca.pem, server.pem and server-key.pem; the https:// client URL then
// serves with that certificate and requires a client certificate signed by
// that CA. WEFT_TEST_ETCD_PLAIN_URL adds a plain http:// client URL beside
// it (etcd serves both from one member).
func runEtcdMember(spec string) error {
	var name, dir, client, peer string
	if _, err := fmt.Sscanf(spec, "%s %s %s %s", &name, &dir, &client, &peer); err != nil {
		return fmt.Errorf("member spec %q: %w", spec, err)
	}
	cu, err := url.Parse(client)
	if err != nil {
		return err
	}
	pu, err := url.Parse(peer)
	if err != nil {
		return err
	}
	cfg := embed.NewConfig()
	cfg.Name, cfg.Dir = name, dir
	cfg.LogLevel = "error"
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = os.Getenv("WEFT_TEST_ETCD_CLUSTER")
	cfg.InitialClusterToken = "weft-test"
	cfg.ListenMetricsUrls = nil
	if dir := os.Getenv("WEFT_TEST_ETCD_TLS"); dir != "" {
		cfg.ClientTLSInfo = transport.TLSInfo{
			CertFile:       filepath.Join(dir, "server.pem"),
			KeyFile:        filepath.Join(dir, "server-key.pem"),
			TrustedCAFile:  filepath.Join(dir, "ca.pem"),
			ClientCertAuth: true,
		}
	}
	if plain := os.Getenv("WEFT_TEST_ETCD_PLAIN_URL"); plain != "" {
		u, err := url.Parse(plain)
		if err != nil {
			return err
		}
		cfg.ListenClientUrls = append(cfg.ListenClientUrls, *u)
	}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return err
	}
	defer e.Close()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-e.Server.ReadyNotify():
		fmt.Println("ready")
	case err := <-e.Err():
		return err
	case <-time.After(60 * time.Second):
		return fmt.Errorf("member %s not ready after 60s", name)
	case <-sig:
		return nil
	}
	select {
	case err := <-e.Err():
		return err
	case <-sig:
		return nil
	}
}
