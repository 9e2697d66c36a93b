# Flock. `make demo` polls a simulated fleet end to end; `make test` runs
# everything CI runs.
GO      ?= go
TAGS    := gosnmp_nodebug
BINS    := dispatcher poller snmpsim

.PHONY: demo test build check vet bench soak images compose-test cluster-test clean

demo:
	@./scripts/demo.sh

test:
	@./scripts/test.sh

check: test

# The load harness (about 1 minute; loopback only): one line per scenario,
# then the Go benchmarks of the per-poll path. Figures go to BENCHMARKS.md.
bench:
	@$(GO) run ./harness/cmd/bench
	$(GO) test -tags $(TAGS) -run '^$$' -bench . -benchmem -count 1 ./internal/...

# Break a running Flock for a bounded time (about 4 minutes; loopback only)
# and count what was lost. Its last line is the soak's verdict.
soak:
	@$(GO) run ./harness/cmd/soak

# Images FROM scratch with static binaries, built with no registry:
# flock/{dispatcher,poller,snmpsim,results,nats-server}:local
images:
	@./scripts/images.sh

# The stack under docker compose on this machine's Docker engine: scale,
# a killed poller, a restarted nats, down -v (about 2 minutes after images).
compose-test: images
	@$(GO) run ./harness/cmd/compose-test

# A 3-node NATS cluster with a remote site behind a leaf node
# (docker-compose.cluster.yml): the task stream's leader killed, a rolling
# restart, the leaf's link cut for 30 s, down -v (about 5 minutes after images).
cluster-test: images
	@$(GO) run ./harness/cmd/cluster-test

vet:
	$(GO) vet -tags integration ./...

# Static binaries: gosnmp_nodebug removes gosnmp's per-packet debug formatting.
build:
	CGO_ENABLED=0 $(GO) build -tags $(TAGS) -trimpath -o bin/ $(addprefix ./cmd/,$(BINS))

clean:
	rm -rf bin data build
