# weft: build, test, lint, fuzz, benchmark, demo.
#
# Quick start on a fresh Debian machine with Go, as root:
#   make demo    # a small overlay in network namespaces, traffic through it
#   make test    # every test, the end-to-end ones included

GO            ?= go
STATICCHECK   ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
FUZZTIME      ?= 10s
# make test also runs every fuzz target, this long each.
TEST_FUZZTIME ?= 4s
TEST_TIMEOUT  ?= 25m
# Debian packages the demo, the end-to-end tests and the benchmarks run.
# etcd-server (3.4) stores for the real kube-apiserver of the Kubernetes-mode
# tests; iptables (iptables-nft) sets a FORWARD policy as Docker does.
DEB_PACKAGES  := iproute2 iputils-ping iperf3 ethtool systemd iptables etcd-server
DEB_COMMANDS  := ip ping iperf3 ethtool systemd-analyze iptables etcd

PKGS          := ./...

.PHONY: all build test lint fuzz soak bench-go bench-tap demo deps cross install clean kube-apiserver cni-plugins

all: build

# VERSION is stamped into both binaries (weftd --version, weft version); the
# commit and the Go release come from the build info Go embeds
# (-buildvcs=auto: also where GOFLAGS turns it off, and quietly without git).
VERSION       ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo "(devel)")
BUILDFLAGS    := -buildvcs=auto -ldflags '-X github.com/weft-dev/weft/version.Version=$(VERSION)'

build:
	$(GO) build $(BUILDFLAGS) -o bin/weftd ./cmd/weftd
	$(GO) build $(BUILDFLAGS) -o bin/weft ./cmd/weft

# deps checks for the Debian packages the tests and the demo run, installs the
# missing ones when root, and otherwise names the command that would.
deps:
	@missing=""; \
	for c in $(DEB_COMMANDS); do command -v $$c >/dev/null 2>&1 || missing="$$missing $$c"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "deps: missing$$missing; installing $(DEB_PACKAGES)"; \
			DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEB_PACKAGES) >/dev/null || exit 1; \
		else \
			echo "deps: missing$$missing; install them with: sudo apt-get install -y $(DEB_PACKAGES)"; exit 1; \
		fi; \
	fi

# kube-apiserver builds the real API server the Kubernetes-mode tests run,
# once, into a cache outside the repository (minutes: it is Kubernetes);
# the tests find it there or at $$WEFT_KUBE_APISERVER.
kube-apiserver:
	@GO=$(GO) test/kube-apiserver/build.sh

# cni-plugins builds flannel's CNI plugin chain and cnitool (seconds) into
# the cache; the Kubernetes-mode test makes a pod with them.
cni-plugins:
	@GO=$(GO) test/cni/build.sh

test: deps build lint cross kube-apiserver cni-plugins
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) $(PKGS)
	@$(MAKE) --no-print-directory fuzz FUZZTIME=$(TEST_FUZZTIME)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) run $(STATICCHECK) $(PKGS)

# cross builds for linux/arm64: weft needs no cgo. It vets there too, which
# checks the arm64 assembly (ipv4's checksum) against its Go declarations.
cross:
	GOOS=linux GOARCH=arm64 CGO_ENABLED=0 $(GO) build -o /dev/null ./...
	GOOS=linux GOARCH=arm64 CGO_ENABLED=0 $(GO) vet ./ipv4/

# fuzz runs every fuzz target for FUZZTIME each (test/fuzz.sh says how a
# failing input is kept, and why a run that only hit Go's fuzzing deadline
# race is tried once more).
fuzz:
	GO=$(GO) test/fuzz.sh $(FUZZTIME)

# soak runs weftd for SOAK_DURATION under mixed traffic in network
# namespaces (as root) and checks that its memory and goroutines stay flat
# and that nothing is dropped unexplained.
SOAK_DURATION ?= 10m
soak: deps build
	WEFT_SOAK=1 WEFT_SOAK_DURATION=$(SOAK_DURATION) $(GO) test -count=1 -timeout 40m -v -run '^TestSoak$$' ./cmd/weftd

# bench-go runs the Go benchmarks: route lookups, the per-packet paths
# against in-memory fakes, lease event handling.
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

# bench-tap shows what the idle packet tap costs the forwarding loops: the
# per-packet benchmarks built with the tap and without it (-tags weft_notap),
# run in alternation, ROUNDS times each, so that both builds meet the same
# machine; it prints the median and the fastest ns/packet of each.
ROUNDS        ?= 10
bench-tap:
	@set -e; dir=$$(mktemp -d); trap 'rm -rf "$$dir"' EXIT; \
	$(GO) test -c -o "$$dir/tap" ./engine; \
	$(GO) test -c -tags weft_notap -o "$$dir/notap" ./engine; \
	for i in $$(seq $(ROUNDS)); do for build in tap notap; do \
		"$$dir/$$build" -test.run '^$$' -test.bench '^Benchmark(Outbound|Inbound)$$' -test.benchtime 20000x | \
		awk -v b=$$build '/ns\/packet/ { for (i = 1; i <= NF; i++) if ($$i == "ns/packet") print $$1, b, $$(i-1) }'; \
	done; done | sort -k1,1 -k2,2 -k3,3n | awk ' \
		function out() { if (n) printf "%-20s %-20s median %7.2f  fastest %7.2f ns/packet (%d runs)\n", k1, (k2 == "tap" ? "tap built in, idle" : "tap compiled out"), v[int((n + 1) / 2)], v[1], n } \
		$$1 " " $$2 != k { out(); k = $$1 " " $$2; k1 = $$1; k2 = $$2; n = 0 } { v[++n] = $$3 } END { out() }'

# install puts the binaries, the systemd unit and an environment file for
# weftd's flags (kept if present) in place. Then: edit /etc/default/weftd,
# systemctl daemon-reload, systemctl enable --now weftd.
PREFIX        ?= /usr/local
install: build
	install -D -m 0755 bin/weftd $(DESTDIR)$(PREFIX)/bin/weftd
	install -D -m 0755 bin/weft $(DESTDIR)$(PREFIX)/bin/weft
	install -D -m 0644 dist/weftd.service $(DESTDIR)/etc/systemd/system/weftd.service
	@if [ "$(PREFIX)" != /usr/local ]; then sed -i 's|/usr/local/bin/weftd|$(PREFIX)/bin/weftd|' $(DESTDIR)/etc/systemd/system/weftd.service; fi
	@[ -e $(DESTDIR)/etc/default/weftd ] || install -D -m 0644 dist/weftd.env $(DESTDIR)/etc/default/weftd

demo: deps build
	bin/weft demo

clean:
	rm -rf bin
