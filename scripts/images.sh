#!/usr/bin/env bash
# Builds Flock's images with no registry: static binaries built here, copied
# into FROM scratch images (docker/Dockerfile). Tags: flock/<name>:local.
# With Debian's victoria-metrics installed (apt-get install victoria-metrics)
# it also builds flock/victoria-metrics:local for the compose profile "tsdb"
# (docker/victoria-metrics.Dockerfile).
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

# VictoriaMetrics, from Debian's binary: it is dynamically linked, so the
# image gets it with the shared libraries ldd lists and the dynamic loader,
# each copied (symlinks followed) to its absolute path.
vm=/usr/bin/victoria-metrics
if [ -x "$vm" ]; then
	if ldd "$vm" | grep -q 'not found'; then ldd "$vm" >&2; exit 1; fi
	vmctx=build/docker-victoria-metrics
	rm -rf "$vmctx" && mkdir -p "$vmctx/root" "$vmctx/data"
	for f in "$vm" $(ldd "$vm" | awk '{for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i}'); do
		mkdir -p "$vmctx/root$(dirname "$f")"
		cp -L "$f" "$vmctx/root$f"
	done
	docker build -q -f docker/victoria-metrics.Dockerfile -t flock/victoria-metrics:local "$vmctx" >/dev/null 2>"$vmctx/build.log" \
		|| { cat "$vmctx/build.log" >&2; exit 1; }
	printf 'images: flock/victoria-metrics:local %s\n' "$(docker image inspect -f '{{.Size}}' flock/victoria-metrics:local | awk '{printf "%.1f MB", $1/1e6}')"
else
	echo "images: no $vm (apt-get install victoria-metrics): skipped flock/victoria-metrics:local, which the compose profile tsdb and make compose-test need" >&2
fi
