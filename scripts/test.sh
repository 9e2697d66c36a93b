#!/usr/bin/env bash
# Flock's test suite, as CI runs it: formatting, vet, then every test with
# the race detector and the integration tag (net-snmp interop included).
# On a fresh Debian machine it first installs net-snmp (snmpd, snmp) when it
# is missing and it can (root with apt-get); the interop test fails, rather
# than skips, without it.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v snmpget >/dev/null || { ! command -v snmpd >/dev/null && [ ! -x /usr/sbin/snmpd ]; }; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		echo "test: installing net-snmp (snmpd, snmp) for the interop test" >&2
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq && apt-get install -y -qq --no-install-recommends snmpd snmp >/dev/null
	else
		echo "test: net-snmp (Debian packages snmpd and snmp) is needed for the interop test; install it first" >&2
	fi
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
for target in "FuzzDecodeTask ./internal/task" "FuzzDecodeRecord ./internal/task" "FuzzLoad ./internal/config" "FuzzResponse ./internal/snmp"; do
	set -- $target
	go test -run '^$' -fuzz "^$1\$" -fuzztime "$FUZZTIME" "$2" >/dev/null || { echo "test: fuzzing $1 failed; rerun: go test -run '^$' -fuzz '^$1\$' $2" >&2; exit 1; }
	echo "fuzz: $1 ran for $FUZZTIME without a failure"
done
