#!/bin/sh
# build.sh builds a real kube-apiserver for the Kubernetes-mode tests into a
# cache outside the repository, once: it takes minutes and the tests need
# only the binary.
#
# k8s.io/kubernetes is not meant to be required as a module: its go.mod
# requires each staging module (k8s.io/api, k8s.io/client-go, ...) at
# v0.0.0 and replaces it with a directory of its own tree. A module of our
# own that requires it must replace each of those with the published
# release of the same Kubernetes version, so this script reads the list of
# staging modules from the real go.mod rather than keeping a copy that
# would go stale.
#
# Usage: build.sh [output]   (default: $WEFT_KUBE_APISERVER, else the cache)
set -eu

K8S_VERSION=${K8S_VERSION:-v1.37.2}
# The staging modules are published as v0.<minor>.<patch>.
STAGING_VERSION=v0.${K8S_VERSION#v1.}
GO=${GO:-go}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/weft
OUT=${1:-${WEFT_KUBE_APISERVER:-$CACHE/kube-apiserver-$K8S_VERSION}}

if [ -x "$OUT" ]; then
	exit 0
fi

work=$CACHE/kube-apiserver-build-$K8S_VERSION
mkdir -p "$work" "$(dirname "$OUT")"
cd "$work"

# The module is built from the proxy, never from the repository's go.mod.
export GOFLAGS=-mod=mod GOWORK=off
modjson=$(GO111MODULE=on "$GO" mod download -json "k8s.io/kubernetes@$K8S_VERSION")
moddir=$(printf '%s\n' "$modjson" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
[ -n "$moddir" ] && [ -f "$moddir/go.mod" ] || { echo "build.sh: no go.mod for k8s.io/kubernetes@$K8S_VERSION" >&2; exit 1; }
gover=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$moddir/go.mod")

{
	echo "module weft.test/kube-apiserver"
	echo
	echo "go $gover"
	echo
	echo "require k8s.io/kubernetes $K8S_VERSION"
	echo
	echo "replace ("
	# Every staging module: required at v0.0.0 inside the require blocks.
	awk '/^require \(/ { in_req = 1; next } in_req && /^\)/ { in_req = 0 }
		in_req && $1 ~ /^k8s\.io\// && $2 == "v0.0.0" { print $1 }' "$moddir/go.mod" |
		while read -r m; do printf '\t%s => %s %s\n' "$m" "$m" "$STAGING_VERSION"; done
	echo ")"
} > go.mod

cat > tools.go <<'GO'
//go:build tools

// Package tools only pins k8s.io/kubernetes/cmd/kube-apiserver for go build.
package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
GO

echo "build.sh: building kube-apiserver $K8S_VERSION into $OUT (several minutes)" >&2
"$GO" get "k8s.io/kubernetes/cmd/kube-apiserver@$K8S_VERSION"
CGO_ENABLED=0 "$GO" build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION" -o "$OUT.tmp" k8s.io/kubernetes/cmd/kube-apiserver
mv "$OUT.tmp" "$OUT"
echo "build.sh: built $OUT" >&2
