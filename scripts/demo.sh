#!/usr/bin/env bash
# Flock demo: poll a simulated fleet once, end to end, on this machine.
#
# Starts the project's SNMP simulator (DEVICES devices on 127.0.0.1), a
# dispatcher with an embedded NATS server, and two poller processes. Every
# device is polled once; one JSON HostRecord per device goes to stdout and
# the dispatcher's summary to stderr. Needs nothing but Go.
set -euo pipefail
cd "$(dirname "$0")/.."

DEVICES=${DEVICES:-24}
work=$(mktemp -d "${TMPDIR:-/tmp}/flock-demo.XXXXXX")
pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
	if [ "${KEEP:-}" = "" ]; then rm -rf "$work"; else echo "demo: files kept in $work" >&2; fi
}
trap cleanup EXIT

echo "demo: building dispatcher, poller and snmpsim" >&2
CGO_ENABLED=0 go build -tags gosnmp_nodebug -o "$work/bin/" ./cmd/dispatcher ./cmd/poller ./cmd/snmpsim

# A free loopback port for the embedded NATS server.
port=""
for p in $(seq 14222 14322); do
	if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then port=$p; break; fi
done
[ -n "$port" ] || { echo "demo: no free port in 14222-14322" >&2; exit 1; }

"$work/bin/snmpsim" --devices "$DEVICES" --interfaces 4 --hosts-out "$work/hosts.yaml" >"$work/snmpsim.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/hosts.yaml" ] && break; sleep 0.1; done
[ -s "$work/hosts.yaml" ] || { echo "demo: simulator did not start:" >&2; cat "$work/snmpsim.log" >&2; exit 1; }

cat >"$work/flock.yaml" <<YAML
nats:
  embedded: {listen: 127.0.0.1:$port, store_dir: $work/nats}
  ack_wait: 5s
poller:
  concurrency: 16
defaults:
  timeout: 1s
  retries: 1
  get: [1.3.6.1.2.1.1.1.0, 1.3.6.1.2.1.1.3.0, 1.3.6.1.2.1.1.5.0]   # sysDescr, sysUpTime, sysName
  walk: [1.3.6.1.2.1.2.2.1.2, 1.3.6.1.2.1.31.1.1.1.6]              # ifDescr, ifHCInOctets
YAML
cat "$work/hosts.yaml" >>"$work/flock.yaml"

echo "demo: $DEVICES simulated devices; dispatcher (embedded NATS on 127.0.0.1:$port) and 2 pollers" >&2
"$work/bin/dispatcher" --config "$work/flock.yaml" --once --log-level warn &
dispatcher=$!
for i in 1 2; do
	FLOCK_POLLER_NAME="poller-$i" "$work/bin/poller" --config "$work/flock.yaml" >"$work/poller-$i.log" 2>&1 &
	pids+=($!)
done
status=0
wait "$dispatcher" || status=$?
if [ "$status" -ne 0 ]; then
	echo "demo: dispatcher exited $status; poller logs:" >&2
	tail -n 20 "$work"/poller-*.log >&2
fi
exit "$status"
