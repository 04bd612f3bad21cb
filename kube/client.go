package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// Backend values flanneld's udp backend writes on its Node, which weft
// writes identically (testdata/flannel-kube/node-h1.json).
const (
	udpBackendType = ""     // the udp backend names no type
	udpBackendData = "null" // and has no data: JSON null
)

// Condition flanneld sets on its Node once its network is up.
const (
	conditionReason  = "FlannelIsUp"
	conditionMessage = "Flannel is running on this node"
)

// Options say how to reach the API server and which Node is this host's.
type Options struct {
	// APIURL and Kubeconfig are flanneld's --kube-api-url and
	// --kubeconfig-file; with neither, the in-cluster config (the pod's
	// service account) is used.
	APIURL, Kubeconfig string
	AnnotationPrefix   string // "" is DefaultAnnotationPrefix
	Logger             *slog.Logger
	// Getenv reads NODE_NAME, POD_NAME and POD_NAMESPACE (os.Getenv).
	Getenv func(string) string
}

// Client is one host's view of the cluster's Nodes. Its methods are safe for
// concurrent use.
type Client struct {
	cs   kubernetes.Interface
	node string
	ann  Annotations
	log  *slog.Logger

	connected atomic.Bool   // the last request or watch reached the API server
	events    atomic.Uint64 // Node events received, for status and metrics
	malformed atomic.Uint64 // Nodes refused as peers (bad public-ip, podCIDR)
}

// Connect builds the API client and finds this host's Node name: NODE_NAME,
// else the nodeName of the pod POD_NAMESPACE/POD_NAME (what kube-flannel's
// DaemonSet passes through the downward API).
func Connect(ctx context.Context, o Options) (*Client, error) {
	prefix := o.AnnotationPrefix
	if prefix == "" {
		prefix = DefaultAnnotationPrefix
	}
	ann, err := NewAnnotations(prefix)
	if err != nil {
		return nil, err
	}
	cfg, err := clientcmd.BuildConfigFromFlags(o.APIURL, o.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client config: %w", err)
	}
	cfg.UserAgent = "weftd"
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return newClient(ctx, cs, ann, o)
}

func newClient(ctx context.Context, cs kubernetes.Interface, ann Annotations, o Options) (*Client, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	getenv := o.Getenv
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	c := &Client{cs: cs, ann: ann, log: log}
	c.node = getenv("NODE_NAME")
	if c.node != "" {
		return c, nil
	}
	pod, ns := getenv("POD_NAME"), getenv("POD_NAMESPACE")
	if pod == "" || ns == "" {
		return nil, errors.New("this host's Node: set NODE_NAME, or POD_NAME and POD_NAMESPACE")
	}
	p, err := cs.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("this host's Node: pod %s/%s: %w", ns, pod, err)
	}
	if p.Spec.NodeName == "" {
		return nil, fmt.Errorf("this host's Node: pod %s/%s is not scheduled on a node", ns, pod)
	}
	c.node = p.Spec.NodeName
	return c, nil
}

// NodeName is this host's Node.
func (c *Client) NodeName() string { return c.node }

// Connected reports whether the last request or watch reached the API server.
func (c *Client) Connected() bool { return c.connected.Load() }

// Events is the number of Node events the watch delivered.
func (c *Client) Events() uint64 { return c.events.Load() }

// Malformed is the number of times a Node was refused as a peer.
func (c *Client) Malformed() uint64 { return c.malformed.Load() }

// WaitSubnet returns this host's subnet, its Node's IPv4 pod CIDR, which must
// lie inside network. While the Node is missing, has no pod CIDR yet or the
// API server is out of reach, it retries with backoff (1 s doubling to 30 s)
// and logs that once; a pod CIDR that can never work (IPv6 only, outside
// network) is an error at once.
func (c *Client) WaitSubnet(ctx context.Context, network netip.Prefix) (netip.Prefix, error) {
	logged := false
	for delay := time.Second; ; delay = min(2*delay, 30*time.Second) {
		n, err := c.cs.CoreV1().Nodes().Get(ctx, c.node, metav1.GetOptions{})
		c.connected.Store(err == nil)
		if err == nil {
			subnet, perr := PodCIDR(n)
			if perr == nil {
				if subnet.Bits() < network.Bits() || !network.Contains(subnet.Addr()) {
					return netip.Prefix{}, fmt.Errorf("node %q: podCIDR %s is not inside the network config's Network %s", c.node, subnet, network)
				}
				if subnet.Bits() > 30 {
					return netip.Prefix{}, fmt.Errorf("node %q: podCIDR %s is too small for a gateway and pods (at most /30)", c.node, subnet)
				}
				return subnet, nil
			}
			if !errors.Is(perr, ErrNoPodCIDR) {
				return netip.Prefix{}, fmt.Errorf("node %q: %w", c.node, perr)
			}
			err = perr
		}
		if !logged {
			c.log.Warn("waiting for this node's pod CIDR; retrying with backoff", "node", c.node, "err", err)
			logged = true
		}
		select {
		case <-ctx.Done():
			return netip.Prefix{}, ctx.Err()
		case <-time.After(delay):
		}
	}
}

// Publish writes flannel's annotations on this host's Node, as flanneld's
// udp backend does: backend-data "null", backend-type "", kube-subnet-manager
// "true" and public-ip. The address published is publicIP, unless the Node
// carries node-public-ip (which replaces it) or public-ip-overwrite (which
// wins over both). It patches only when a value differs, so a Node
// flanneld annotated for the same address is left as it is. It returns
// the address published.
//
// The patch goes through the status subresource, as flanneld's does, so
// that the permissions flannel's ClusterRole grants (nodes/status patch)
// are enough.
func (c *Client) Publish(ctx context.Context, publicIP netip.Addr) (netip.Addr, error) {
	n, err := c.cs.CoreV1().Nodes().Get(ctx, c.node, metav1.GetOptions{})
	c.connected.Store(err == nil)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("node %q: %w", c.node, err)
	}
	ip, err := c.publicIP(n, publicIP)
	if err != nil {
		return netip.Addr{}, err
	}
	want := map[string]string{
		c.ann.BackendData:       udpBackendData,
		c.ann.BackendType:       udpBackendType,
		c.ann.SubnetKubeManaged: "true",
		c.ann.PublicIP:          ip.String(),
	}
	patch := map[string]string{}
	for k, v := range want {
		if got, ok := n.Annotations[k]; !ok || got != v {
			patch[k] = v
		}
	}
	if len(patch) == 0 {
		return ip, nil
	}
	body, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": patch}})
	if err != nil {
		return netip.Addr{}, err
	}
	_, err = c.cs.CoreV1().Nodes().Patch(ctx, c.node, types.MergePatchType, body, metav1.PatchOptions{}, "status")
	if err != nil {
		return netip.Addr{}, fmt.Errorf("node %q: annotate: %w", c.node, err)
	}
	return ip, nil
}

// publicIP is the address to publish for n: public-ip-overwrite, else
// node-public-ip, else detected. A malformed operator annotation is an
// error rather than a silent fallback: peers would send to the wrong place.
func (c *Client) publicIP(n *corev1.Node, detected netip.Addr) (netip.Addr, error) {
	for _, key := range []string{c.ann.PublicIPOverwrite, c.ann.NodePublicIP} {
		v, ok := n.Annotations[key]
		if !ok || v == "" {
			continue
		}
		ip, err := netip.ParseAddr(v)
		if err != nil || !ip.Is4() || ip.IsUnspecified() {
			return netip.Addr{}, fmt.Errorf("node %q: annotation %s=%q is not an IPv4 address", c.node, key, v)
		}
		if ip != detected {
			c.log.Info("public IP taken from the node's annotation", "annotation", key, "public_ip", ip, "detected", detected)
		}
		return ip, nil
	}
	return detected, nil
}

// MarkNetworkAvailable sets the Node's NetworkUnavailable condition to False
// with flanneld's reason and message, so that the kubelet lets pods on.
func (c *Client) MarkNetworkAvailable(ctx context.Context) error {
	now := metav1.Now()
	cond := corev1.NodeCondition{
		Type:               corev1.NodeNetworkUnavailable,
		Status:             corev1.ConditionFalse,
		Reason:             conditionReason,
		Message:            conditionMessage,
		LastTransitionTime: now,
		LastHeartbeatTime:  now,
	}
	body, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": []corev1.NodeCondition{cond}}})
	if err != nil {
		return err
	}
	// A strategic merge patch: conditions merge by type, the others stay.
	_, err = c.cs.CoreV1().Nodes().PatchStatus(ctx, c.node, body)
	c.connected.Store(err == nil)
	if err != nil {
		return fmt.Errorf("node %q: set NetworkUnavailable=False: %w", c.node, err)
	}
	return nil
}
