# The README's commands. `make up` and `make test` install what a fresh
# machine of this kind is missing before they build anything.
SHELL := /bin/bash
CARGO ?= cargo
TOOLS := $(CURDIR)/.tools
# setup records which nats-server it found or installed; tests and `up` use it.
NATS_SERVER_PATH = $$(cat $(TOOLS)/nats-server-path)
COMPONENTIZE_PY_PATH = $$(cat $(TOOLS)/componentize-py-path)
PROMETHEUS_CLIENT_PATH = $$(cat $(TOOLS)/prometheus-client-path)
SCHEMATHESIS_PATH = $$(cat $(TOOLS)/schemathesis-path)
PLAYWRIGHT_PATH = $$(cat $(TOOLS)/playwright-path)

.PHONY: up test lint bench setup

# Debian packages: the C toolchain the QuickJS shim (runtime/js/shim) is
# compiled with, and nginx + lua-nginx-module, which run the APISIX gateway
# plugin in its tests (APISIX itself cannot be installed here), and the
# headless Chromium the web console's browser test drives.
APT_PACKAGES := clang-19 llvm-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32 \
	nginx libnginx-mod-http-lua lua-resty-core lua-cjson lua-yaml chromium

## setup: the wasm32-wasip1 and wasm32-wasip2 targets, the shim's C toolchain, nats-server (>= 2.12)
## componentize-py (Python components, for the tests), prometheus_client (its OpenMetrics
## parser checks /metrics in the tests), schemathesis (fuzzes the OpenAPI contract) and
## playwright-core (drives Chromium through the web console) into .tools/
setup:
	@rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1
	@rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
	@rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt
	@scripts/install-apt-packages.sh $(APT_PACKAGES)
	@mkdir -p $(TOOLS)
	@NIMBUS_NATS_SERVER= scripts/install-nats-server.sh $(TOOLS) > $(TOOLS)/nats-server-path
	@scripts/install-componentize-py.sh $(TOOLS) > $(TOOLS)/componentize-py-path
	@scripts/install-prometheus-client.sh $(TOOLS) > $(TOOLS)/prometheus-client-path
	@scripts/install-schemathesis.sh $(TOOLS) > $(TOOLS)/schemathesis-path
	@scripts/install-playwright-core.sh $(TOOLS) > $(TOOLS)/playwright-path

## up: run nats-server, one API server and one worker on loopback
up: setup
	$(CARGO) build --release -p nimbus-cli
	NIMBUS_NATS_SERVER=$(NATS_SERVER_PATH) target/release/nimbus up

## test: every test of the workspace, against a real nats-server
test: setup
	NIMBUS_NATS_SERVER=$(NATS_SERVER_PATH) NIMBUS_COMPONENTIZE_PY=$(COMPONENTIZE_PY_PATH) \
		NIMBUS_PROMETHEUS_CLIENT=$(PROMETHEUS_CLIENT_PATH) NIMBUS_SCHEMATHESIS=$(SCHEMATHESIS_PATH) \
		NIMBUS_PLAYWRIGHT=$(PLAYWRIGHT_PATH) $(CARGO) test --workspace

## lint: rustfmt and clippy, warnings are errors
lint: setup
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## bench: engine benchmarks + end-to-end runs against `nimbus up`; writes docs/benchmarks.md
bench: setup
	NIMBUS_NATS_SERVER=$(NATS_SERVER_PATH) scripts/bench.sh
