# devstreams: the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
NODE_MODULES := node_modules/.package-lock.json
BUNDLE := dist/devstreams.cjs
SOURCES := $(shell find wire core hub agent service cli -name '*.ts' -o -name '*.css' -o -name '*.json' 2>/dev/null) package.json scripts/build.mjs

.PHONY: all build run test test-unit typecheck deps system-deps clean bench binary deb screenshots

all: build

$(NODE_MODULES): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

deps: $(NODE_MODULES)

# Debian packages the tests and the demo use (OpenSSH, mosquitto, tmux, socat, iperf3).
system-deps:
	bash scripts/install-system-deps.sh

$(BUNDLE): $(NODE_MODULES) $(SOURCES)
	node scripts/build.mjs

build: $(BUNDLE)

typecheck: $(NODE_MODULES)
	npx tsc --noEmit -p .
	npx tsc --noEmit -p hub/console/client

# A local hub and agent on embedded defaults, a demo service, and a working stream through them.
run: build
	node scripts/demo.mjs

# The Debian packages the tests talk to are installed first (quick when they are already there).
test: system-deps build typecheck
	@rc=0; npx vitest run --reporter=default --reporter=json --outputFile=dist/test-results.json || rc=$$?; \
	node scripts/test-summary.mjs dist/test-results.json; exit $$rc

# The console's screenshots in docs/console/ (docs/console.md): test runs leave them alone.
screenshots: build
	DEVSTREAMS_UPDATE_SCREENSHOTS=1 npx vitest run test/console.test.ts

# Benchmarks (never part of `make test`): real hub/agent/connect processes against iperf3 and socat,
# and the agent as shipped (the x64 and arm64 single executables, rebuilt first when stale);
# writes bench/results/<date>.json, .md and .svg (docs/benchmarks.md). BENCH_ARGS=--quick for a smoke
# run; BENCH_ARGS='--only throughput' (or memory, latency, load) runs one section on its own.
bench: build dist/devstreams-linux-x64 dist/devstreams-linux-arm64
	node bench/build.mjs
	ulimit -n 16384 2>/dev/null || true; node dist/bench.cjs $(BENCH_ARGS)

# Single executables for the Pi (arm64) and x64, the armv7 CLI for the system's nodejs, then Debian
# packages of them: docs/packaging.md. No maintained armv7 Node can be embedded (the newest on the npm
# registry is 20.11.0, end of life), so the one-file armv7 executable is built only on request:
# `make binary ARMV7_EXECUTABLE=1`; it then states its runtime's age in the build, --version and the
# agent's log. The supported armv7 install is the armhf .deb, on Debian's security-maintained nodejs.
ARMV7_EXECUTABLE ?=
BINARIES := dist/devstreams-linux-arm64 dist/devstreams-linux-x64 $(if $(filter 1,$(ARMV7_EXECUTABLE)),dist/devstreams-linux-armv7)
BINARY_INPUTS := $(NODE_MODULES) $(SOURCES) scripts/binary/build.mjs scripts/binary/targets.mjs scripts/binary/malloc-trim.cc
dist/devstreams-linux-%: $(BINARY_INPUTS)
	$(if $(and $(filter armv7,$*),$(filter 1,$(ARMV7_EXECUTABLE))),DEVSTREAMS_EOL_EXECUTABLE=1 )node scripts/binary/build.mjs $*

# The armhf .deb's program: the armv7 bundle (node-pty's addon inside) for the system's nodejs.
dist/devstreams-linux-armv7.cjs: $(BINARY_INPUTS)
	node scripts/binary/build.mjs armv7-bundle

binary: $(BINARIES) dist/devstreams-linux-armv7.cjs

deb: dist/devstreams-linux-arm64 dist/devstreams-linux-x64 dist/devstreams-linux-armv7.cjs
	bash packaging/build-deb.sh

clean:
	rm -rf dist .demo
