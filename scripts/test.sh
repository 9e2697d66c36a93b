#!/usr/bin/env bash
# Flock's test suite, as CI runs it: formatting, vet, then every test with
# the race detector and the integration tag (net-snmp interop included).
# On a fresh Debian machine it first installs net-snmp (snmpd, snmp),
# Chromium (the status page's test renders it), Prometheus, VictoriaMetrics
# and InfluxDB (the metric outputs' tests write to them) when they are
# missing and it can (root with apt-get), and builds Telegraf (not a Debian
# package; the shipped Telegraf configurations' test runs it); those tests
# fail, rather than skip, without them.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v snmpget >/dev/null || { ! command -v snmpd >/dev/null && [ ! -x /usr/sbin/snmpd ]; } || ! command -v ip >/dev/null || ! command -v unshare >/dev/null || ! command -v chromium >/dev/null || ! command -v prometheus >/dev/null || ! command -v influxd >/dev/null || ! command -v victoria-metrics >/dev/null; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		echo "test: installing net-snmp (snmpd, snmp), iproute2 and util-linux (a link-local agent in a network namespace of its own), chromium, prometheus, victoria-metrics and influxdb for the interop, status page and metric output tests" >&2
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq && apt-get install -y -qq --no-install-recommends snmpd snmp iproute2 util-linux chromium fonts-liberation prometheus influxdb victoria-metrics >/dev/null
	else
		echo "test: net-snmp (Debian packages snmpd and snmp), iproute2, util-linux, chromium, prometheus, victoria-metrics and influxdb are needed for the interop, status page and metric output tests; install them first" >&2
	fi
fi
if ! command -v telegraf >/dev/null && [ -z "${FLOCK_TELEGRAF:-}" ]; then
	echo "test: building telegraf v1.37.2 (the plugins the shipped Telegraf configurations use) into $(go env GOPATH)/bin" >&2
	CGO_ENABLED=0 go install -tags custom,inputs.nats_consumer,parsers.influx,parsers.json_v2,outputs.file,serializers.influx \
		github.com/influxdata/telegraf/cmd/telegraf@v1.37.2
	export FLOCK_TELEGRAF="$(go env GOPATH)/bin/telegraf"
fi

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "test: gofmt would change:" >&2
	echo "$unformatted" >&2
	exit 1
fi
go vet -tags integration ./...
go test -race -tags integration -count=1 "$@" ./...

# Fuzzing, bounded: new inputs are kept in the Go cache; the corpus in each
# package's testdata/fuzz is replayed by the plain test run above.
FUZZTIME=${FUZZTIME:-10s}
# corpus_size counts a target's saved inputs (0 before its first failure made the folder).
corpus_size() { if [ -d "$1" ]; then ls "$1" | wc -l; else echo 0; fi; }
for target in "FuzzDecodeTask ./internal/task" "FuzzDecodeRecord ./internal/task" "FuzzReadHead ./internal/task" "FuzzLoad ./internal/config" "FuzzResponse ./internal/snmp" "FuzzAnswer ./internal/snmp" "FuzzParse ./internal/agent"; do
	set -- $target
	corpus="$2/testdata/fuzz/$1"
	before=$(corpus_size "$corpus")
	log=$(mktemp)
	if go test -run '^$' -fuzz "^$1\$" -fuzztime "$FUZZTIME" "$2" >"$log" 2>&1; then
		echo "fuzz: $1 ran for $FUZZTIME without a failure"
	elif [ "$(corpus_size "$corpus")" -gt "$before" ]; then
		# A failing input was found and saved: a real failure.
		echo "test: fuzzing $1 found a failing input, saved in $corpus:" >&2
		tail -n 40 "$log" >&2
		exit 1
	else
		# The fuzzing engine failed without a failing input (a worker that
		# hung or died on a loaded machine): shown, not counted as a test failure.
		echo "fuzz: WARNING: the fuzzing engine stopped on $1 without a failing input; its output:" >&2
		tail -n 20 "$log" >&2
	fi
	rm -f "$log"
done
