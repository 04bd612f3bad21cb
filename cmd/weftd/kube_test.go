package main

import (
	"strings"
	"testing"
)

func TestParseKubeFlags(t *testing.T) {
	noEnv := func(string) string { return "" }
	cases := []struct {
		name    string
		args    []string
		wantErr string
		check   func(*testing.T, *config)
	}{
		{name: "flanneld's defaults", args: []string{"--kube-subnet-mgr"}, check: func(t *testing.T, c *config) {
			if !c.kubeSubnetMgr || c.kubeAnnotationPrefix != "flannel.alpha.coreos.com" ||
				c.netConfPath != "/etc/kube-flannel/net-conf.json" || !c.setNodeNetworkUnavailable ||
				c.kubeconfigFile != "" || c.kubeAPIURL != "" {
				t.Errorf("%+v", c)
			}
		}},
		{name: "as flanneld's recording ran", args: []string{"--kube-subnet-mgr", "--kubeconfig-file", "/k", "--net-config-path", "n.json",
			"--public-ip", "192.0.2.1", "--subnet-file", "/s", "--set-node-network-unavailable=false", "--kube-api-url", "https://192.0.2.254:6443"},
			check: func(t *testing.T, c *config) {
				if c.kubeconfigFile != "/k" || c.netConfPath != "n.json" || c.setNodeNetworkUnavailable || c.kubeAPIURL != "https://192.0.2.254:6443" {
					t.Errorf("%+v", c)
				}
			}},
		{name: "no static subnet", args: []string{"--kube-subnet-mgr", "--subnet", "100.96.1.0/24", "--network", "100.96.0.0/16"}, wantErr: "--kube-subnet-mgr"},
		{name: "no etcd", args: []string{"--kube-subnet-mgr", "--etcd-endpoints", "http://192.0.2.1:2379"}, wantErr: "--etcd-endpoints"},
		{name: "no net config", args: []string{"--kube-subnet-mgr", "--net-config-path", ""}, wantErr: "--net-config-path"},
		{name: "checked like the other modes", args: []string{"--kube-subnet-mgr", "--public-ip", "fd00::1"}, wantErr: "--public-ip"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseFlagsQuiet(tc.args, noEnv)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}
