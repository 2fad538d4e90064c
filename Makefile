# Entry points of the workspace. `make help` lists them.
CARGO ?= cargo

.PHONY: help run test lint fmt bench build

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

build: ## Build every binary
	$(CARGO) build --workspace --bins

run: ## Build and start DataStorage on the embedded SQLite store (./data/audit.db, ports 8080/8081/9090)
	$(CARGO) run -p datastorage -- serve

test: ## Run every test of the workspace (unit, integration, process restarts)
	$(CARGO) test --workspace

lint: ## Formatting check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

bench: ## Run the benchmarks (release build; not part of `make test`)
	$(CARGO) bench -p datastorage --bench ingest
	$(CARGO) bench -p audit-sdk --bench sdk
