#!/usr/bin/env bash
# Builds Flock's images with no registry: static binaries built here, copied
# into FROM scratch images (docker/Dockerfile). Tags: flock/<name>:local.
set -euo pipefail
cd "$(dirname "$0")/.."
ctx=build/docker
rm -rf "$ctx" && mkdir -p "$ctx/config"
if [ ! -x /bin/busybox ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
	echo "images: installing busybox-static for the local nats-server image's health check" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends busybox-static >/dev/null \
		|| { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends busybox-static >/dev/null; }
fi
CGO_ENABLED=0 go build -trimpath -tags gosnmp_nodebug -ldflags="-s -w" -o "$ctx/" ./cmd/dispatcher ./cmd/poller ./cmd/snmpsim ./cmd/results
CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o "$ctx/nats-server" github.com/nats-io/nats-server/v2
cp /etc/ssl/certs/ca-certificates.crt "$ctx/"
cp /bin/busybox "$ctx/busybox"
printf 'root:x:0:0:root:/:/sbin/nologin\nnobody:x:65534:65534:nobody:/:/sbin/nologin\n' >"$ctx/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$ctx/group"
cp config/*.yaml "$ctx/config/"
for target in dispatcher poller snmpsim results nats-server; do
	docker build -q -f docker/Dockerfile --target "$target" -t "flock/$target:local" "$ctx" >/dev/null 2>"$ctx/build.log" \
		|| { cat "$ctx/build.log" >&2; exit 1; }
	printf 'images: flock/%s:local %s\n' "$target" "$(docker image inspect -f '{{.Size}}' "flock/$target:local" | awk '{printf "%.1f MB", $1/1e6}')"
done
