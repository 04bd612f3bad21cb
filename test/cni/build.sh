#!/bin/sh
# build.sh builds, from the Go module proxy, the CNI chain a flannel node
# runs: containernetworking/plugins v0.9.1's flannel plugin, which reads
# subnet.env and delegates to bridge and host-local, and cnitool to run it
# without a kubelet. The Kubernetes-mode end-to-end test makes a pod with
# them from weftd's subnet.env. Output: a directory outside the repository.
#
# Usage: build.sh [dir]   (default: $WEFT_CNI_BIN, else the cache)
set -eu

PLUGINS_VERSION=v0.9.1
CNI_VERSION=v0.8.1 # cnitool of the same era: CNI spec 0.4.0
GO=${GO:-go}
OUT=${1:-${WEFT_CNI_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/weft/cni-$PLUGINS_VERSION}}

have=true
for b in flannel bridge host-local cnitool; do
	[ -x "$OUT/$b" ] || have=false
done
$have && exit 0

mkdir -p "$OUT"
echo "build.sh: building the CNI plugins $PLUGINS_VERSION and cnitool $CNI_VERSION into $OUT" >&2
# Outside any module: go install pkg@version builds each at its own go.mod.
cd /
GOFLAGS=-mod=mod GOWORK=off GOBIN=$OUT CGO_ENABLED=0 "$GO" install \
	"github.com/containernetworking/plugins/plugins/meta/flannel@$PLUGINS_VERSION" \
	"github.com/containernetworking/plugins/plugins/main/bridge@$PLUGINS_VERSION" \
	"github.com/containernetworking/plugins/plugins/ipam/host-local@$PLUGINS_VERSION"
GOFLAGS=-mod=mod GOWORK=off GOBIN=$OUT CGO_ENABLED=0 "$GO" install "github.com/containernetworking/cni/cnitool@$CNI_VERSION"
