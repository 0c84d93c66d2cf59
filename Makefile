# Tollgate. The two commands a newcomer needs: `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

WASM := target/wasm32-wasip1/release/tollgate.wasm
export TOLLGATE_DEMO_KEY ?= ZGVtby1vbmx5LXNlY3JldC1kby1ub3QtdXNlLWluLXByb2R1Y3Rpb24

.PHONY: help deps build run test test-native test-wasm test-e2e token bench clean

help:
	@echo "make run    start the demo: authority :8080, echo upstream :8081, Envoy+Tollgate :10000 (admin :9901)"
	@echo "make test   run every test (native core, wasm32 core, authority on both stores, Envoy end to end)"
	@echo "make build  build the filter: $(WASM)"
	@echo "make token  mint a demo access token for alice"

deps:
	@scripts/deps.sh

build: deps
	cargo build --release --target wasm32-wasip1 -p tollgate
	@ls -l $(WASM) | awk '{print "tollgate.wasm: " $$5 " bytes"}'

test: build
	cargo build --workspace --bins
	cargo test --workspace
	scripts/test-wasm-core.sh

clean:
	cargo clean
