# Entry points of the workspace. `make help` lists them.
CARGO ?= cargo
# bash, for `set -o pipefail` in `bench`.
SHELL := /bin/bash
DOCKER ?= docker

# Image names and tag, shared with deploy/overlays/kind (checked by `e2e preflight`).
include deploy/images.env

.PHONY: help run test lint fmt bench build images preflight e2e e2e-local

help: ## List the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(firstword $(MAKEFILE_LIST)) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

build: ## Build every binary
	$(CARGO) build --workspace --bins

# The Gateway's ports in `make run`, next to DataStorage's 8080/8081/9090.
GATEWAY_API_PORT ?= 8180
GATEWAY_HEALTH_PORT ?= 8181
GATEWAY_METRICS_PORT ?= 9190

run: ## Start the local stack: DataStorage (SQLite ./data/audit.db; 8080/8081/9090) + Gateway (memory backend; 8180/8181/9190). Ctrl-C stops both
	$(CARGO) build -p datastorage -p gateway
	@trap 'kill $$ds $$gw 2>/dev/null' INT TERM; \
	$(CARGO) run -q -p datastorage -- serve & ds=$$!; \
	GATEWAY_SERVER__API_PORT=$(GATEWAY_API_PORT) \
	GATEWAY_SERVER__HEALTH_PORT=$(GATEWAY_HEALTH_PORT) \
	GATEWAY_SERVER__METRICS_PORT=$(GATEWAY_METRICS_PORT) \
	GATEWAY_SERVER__SHUTDOWN_DELAY=1s \
	GATEWAY_REMEDIATION__BACKEND=memory \
	GATEWAY_AUDIT__DATA_STORAGE_URL=http://localhost:8080 \
	$(CARGO) run -q -p gateway -- serve & gw=$$!; \
	while kill -0 $$ds 2>/dev/null && kill -0 $$gw 2>/dev/null; do sleep 1; done; \
	kill $$ds $$gw 2>/dev/null; wait $$ds; ds_rc=$$?; wait $$gw; gw_rc=$$?; \
	echo "local stack stopped (datastorage exit $$ds_rc, gateway exit $$gw_rc)"; \
	[ $$ds_rc -eq 0 ] && [ $$gw_rc -eq 0 ]

images: ## Build the datastorage and gateway images (needs a Docker engine)
	@command -v $(DOCKER) >/dev/null || { echo "images: '$(DOCKER)' not found; building images needs a Docker engine"; exit 1; }
	$(DOCKER) build -f deploy/docker/Dockerfile --build-arg BIN=datastorage -t $(DATASTORAGE_IMAGE):$(IMAGE_TAG) .
	$(DOCKER) build -f deploy/docker/Dockerfile --build-arg BIN=gateway -t $(GATEWAY_IMAGE):$(IMAGE_TAG) .

preflight: ## Check the Kind and production overlays' manifests (Service URLs, host paths, RBAC, probes, images, ports)
	$(CARGO) run -q -p e2e -- preflight --overlay deploy/overlays/kind
	$(CARGO) run -q -p e2e -- preflight --overlay deploy/overlays/production

test: ## Run every test of the workspace (unit, integration, process restarts, the local e2e suite); under CI also schemathesis against DataStorage and 2 minutes of fuzzing
	$(CARGO) test --workspace
	@if [ -n "$$CI" ]; then .ci/schemathesis.sh; fi
	@if [ -n "$$CI" ]; then .ci/fuzz.sh; fi

e2e: ## The scenario suite in a Kind cluster (needs docker, kind, kubectl; KEEP_CLUSTER=1 keeps it)
	$(CARGO) build -q -p e2e
	./target/debug/e2e test --platform kind

e2e-local: ## The scenario suite on local processes (SQLite and PostgreSQL stacks)
	$(CARGO) build -q -p datastorage -p gateway -p e2e --bins
	./target/debug/e2e test --platform local

lint: ## Formatting check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

bench: ## Run every benchmark of the workspace (release build; not in `make test`) and print one table
	@mkdir -p target/bench
	set -o pipefail; { \
	  $(CARGO) bench -p datastorage --bench ingest && \
	  $(CARGO) bench -p datastorage --bench postgres_ingest && \
	  $(CARGO) bench -p audit-sdk --bench sdk && \
	  $(CARGO) bench -p audit-sdk --bench durable && \
	  $(CARGO) bench -p audit-sdk --features spool-candidates --bench spool_candidates && \
	  $(CARGO) bench -p gateway --bench load && \
	  $(CARGO) bench -p gateway --bench kubernetes; \
	} 2>&1 | tee target/bench/output.txt
	@echo; $(CARGO) run -q -p e2e -- bench-table target/bench/output.txt
