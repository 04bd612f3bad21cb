package bench

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// lineWriter hands what serveEtcd prints to the test.
type lineWriter chan string

func (w lineWriter) Write(b []byte) (int, error) { w <- string(b); return len(b), nil }

// TestServeEtcd starts the flannel mode's etcd on loopback, checks that the
// seed key is there once it says it is ready, and that it stops on cancel.
func TestServeEtcd(t *testing.T) {
	addr, peer := freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ready := make(lineWriter, 1)
	done := make(chan error, 1)
	go func() {
		done <- serveEtcd(ctx, "http://"+addr, "http://"+peer, t.TempDir(), []string{flannelPrefix + "/config=" + flannelConfig}, ready)
	}()
	select {
	case line := <-ready:
		if strings.TrimSpace(line) != etcdReadyLine {
			t.Fatalf("ready line %q", line)
		}
	case err := <-done:
		t.Fatalf("etcd ended: %v", err)
	}

	// etcd's JSON gateway: keys and values in base64.
	body := fmt.Sprintf(`{"key":%q}`, base64.StdEncoding.EncodeToString([]byte(flannelPrefix+"/config")))
	resp, err := http.Post("http://"+addr+"/v3/kv/range", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var rr struct {
		KVs []struct{ Value string } `json:"kvs"`
	}
	if err := json.Unmarshal(data, &rr); err != nil || len(rr.KVs) != 1 {
		t.Fatalf("range: %v, %s", err, data)
	}
	if v, _ := base64.StdEncoding.DecodeString(rr.KVs[0].Value); string(v) != flannelConfig {
		t.Errorf("config %q", v)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("stop: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("etcd did not stop")
	}
}

// freeAddr returns a loopback address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
