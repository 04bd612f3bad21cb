package kube

import (
	"fmt"
	"regexp"
	"strings"
)

// DefaultAnnotationPrefix is flanneld's --kube-annotation-prefix default.
const DefaultAnnotationPrefix = "flannel.alpha.coreos.com"

// Annotations are the keys of flannel's Node annotations under one prefix.
type Annotations struct {
	SubnetKubeManaged string // "true" on every Node a flannel-compatible daemon runs on
	BackendData       string // the backend's JSON; "null" for udp
	BackendType       string // "" for udp: flanneld's udp backend sets no type
	PublicIP          string // where peers send the encapsulated packets
	// PublicIPOverwrite, set by an operator, replaces what PublicIP says.
	PublicIPOverwrite string
	// NodePublicIP, set by an operator, replaces the address the daemon
	// detected (--public-ip or the interface's) before it publishes.
	NodePublicIP string
}

// prefixPattern is the form Kubernetes allows an annotation key's prefix in,
// as flannel checks it: a DNS name, a slash, and an optional name part
// ending in '-'.
var prefixPattern = regexp.MustCompile(`^(?:[a-z0-9_-]+\.)+[a-z0-9_-]+/(?:[a-z0-9_-]+-)?$`)

// NewAnnotations returns the keys under prefix with flannel's rules: at most
// one slash; without one, a slash is appended ("example.com" gives
// "example.com/public-ip"); after a name part, a dash ("example.com/net"
// gives "example.com/net-public-ip").
func NewAnnotations(prefix string) (Annotations, error) {
	p := prefix
	switch strings.Count(p, "/") {
	case 0:
		p += "/"
	case 1:
	default:
		return Annotations{}, fmt.Errorf("annotation prefix %q: at most one '/'", prefix)
	}
	if !strings.HasSuffix(p, "/") && !strings.HasSuffix(p, "-") {
		p += "-"
	}
	if !prefixPattern.MatchString(p) {
		return Annotations{}, fmt.Errorf("annotation prefix %q: want a DNS name, optionally followed by /name, in lower case", prefix)
	}
	return Annotations{
		SubnetKubeManaged: p + "kube-subnet-manager",
		BackendData:       p + "backend-data",
		BackendType:       p + "backend-type",
		PublicIP:          p + "public-ip",
		PublicIPOverwrite: p + "public-ip-overwrite",
		NodePublicIP:      p + "node-public-ip",
	}, nil
}
