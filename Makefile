# Tollgate. The two commands a newcomer needs: `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

WASM := target/wasm32-wasip1/release/tollgate.wasm
NATIVE := target/native/libtollgate_native.so
# `TOLLGATE_HOST=native make run`: the demo on the native Envoy module.
TOLLGATE_HOST ?= wasm
export TOLLGATE_HOST
# The demo signing key (public: demo only). The filter reads it from Envoy's
# environment (vm_config.environment_variables), the authority from its own.
export TOLLGATE_DEMO_KEY ?= ZGVtby1vbmx5LXNlY3JldC1kby1ub3QtdXNlLWluLXByb2R1Y3Rpb24
# The edge credential (public: demo only): the filter sends it on feed and
# live-check callouts, the authority answers those endpoints only with it.
export TOLLGATE_EDGE_CREDENTIAL ?= demo-edge-credential-not-for-production-0001

.PHONY: help deps build bins run token test test-deploy fuzz sanitize oci compose-up compose-down bench clean

help:
	@echo "make run          the demo: authority :8080, echo upstream :8081, Envoy+Tollgate :10000 (admin :9901)"
	@echo "make test         every test: core natively and on wasm32, the simulation, authority on both stores,"
	@echo "                  Envoy end to end on both hosts (Wasm, native), short fuzz runs,"
	@echo "                  schemathesis against the authority's OpenAPI document on both stores, deploy files"
	@echo "make fuzz         every fuzz target for FUZZ_SECONDS each (default 600)"
	@echo "make sanitize     AddressSanitizer (authority, SQLite path) and Miri (the pure core); slow, not in make test"
	@echo "make build        the filter module ($(WASM)) and the native Envoy module ($(NATIVE))"
	@echo "                  TOLLGATE_HOST=native make run: the demo on the native module"
	@echo "make token        a demo access token for alice"
	@echo "make oci          the filter as an OCI image (target/oci/tollgate-filter)"
	@echo "make compose-up   the docker-compose demo (needs a Docker engine)"
	@echo "make bench        Tollgate vs bare Envoy, jwt_authn, ext_authz -> BENCHMARKS.md (~20 min; BENCH_QUICK=1 smoke run)"

deps:
	@scripts/deps.sh

build: deps
	cargo build --release --target wasm32-wasip1 -p tollgate
	scripts/wasm-opt.sh $(WASM)
	@ls -l $(WASM) | awk '{print "tollgate.wasm: " $$5 " bytes"}'
	cargo build --profile native -p tollgate-native
	@ls -l $(NATIVE) | awk '{print "libtollgate_native.so: " $$5 " bytes"}'

bins:
	cargo build -p tollgate-authority -p tollgate-e2e --bins

run: build bins
	scripts/run-demo.sh

token: bins
	@target/debug/tollgate-authority --data-dir .run/authority mint --sub alice --scope "read write"

test: build bins
	scripts/deploy/tools.sh
	cargo test --workspace
	TOLLGATE_E2E_HOST=native cargo test -p tollgate-e2e
	scripts/test-wasm-core.sh
	scripts/fuzz.sh
	scripts/api/schemathesis.sh
	scripts/deploy/test.sh

fuzz:
	FUZZ_SECONDS=$${FUZZ_SECONDS:-600} scripts/fuzz.sh

sanitize:
	scripts/sanitize.sh

test-deploy: build
	scripts/deploy/tools.sh
	scripts/deploy/test.sh

oci: build
	scripts/deploy/oci-build.sh

compose-up: build
	docker compose -p tollgate -f envoy/docker-compose.yml up --build

compose-down:
	docker compose -p tollgate -f envoy/docker-compose.yml down

bench: deps
	scripts/bench/run.sh

clean:
	cargo clean
