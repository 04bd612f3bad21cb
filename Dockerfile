# A small static image of weftd and weft, for deploy/kube-weft.yml.
#   docker build --build-arg VERSION=$(git describe --tags --always) -t weft:latest .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=(devel)
# weft is pure Go: CGO off gives static binaries that run on any base.
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X github.com/weft-dev/weft/version.Version=${VERSION}" -o /out/weftd ./cmd/weftd && \
    CGO_ENABLED=0 go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X github.com/weft-dev/weft/version.Version=${VERSION}" -o /out/weft ./cmd/weft

# busybox's musl build is static too; the DaemonSet's init container uses
# its cp to install the CNI config.
FROM busybox:1.37-musl
COPY --from=build /out/weftd /out/weft /
ENTRYPOINT ["/weftd"]
