# The front door: `make help` lists the targets.
SHELL := /bin/bash
CARGO ?= cargo

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-14s %s\n", $$1, $$2}'

.PHONY: demo
demo: ## Build what is needed, start the local cluster + Prometheus, run the operator on the examples, show their status
	hack/demo.sh

.PHONY: test
test: fmt-check clippy ## The full suite: fmt, clippy, unit tests, integration tests against the local cluster
	hack/test.sh

.PHONY: bench
bench: ## Benchmark (not part of make test): 1,000 and 10,000 targets, release build; writes docs/bench.md
	hack/bench.sh

.PHONY: unit
unit: ## Unit tests only (no cluster), and the Argo CD health scripts
	$(CARGO) test --lib --bins --test crds --test health_scripts

.PHONY: fmt-check
fmt-check: ## Check formatting (cargo fmt --check)
	$(CARGO) fmt --all -- --check

.PHONY: fmt
fmt: ## Format the code
	$(CARGO) fmt --all

.PHONY: clippy
clippy: ## Lint with clippy, warnings are errors (also the code behind the otlp feature)
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) clippy --features otlp --lib --bins --target-dir target/otlp -- -D warnings

.PHONY: build
build: ## Build the operator binary
	$(CARGO) build

.PHONY: crds
crds: ## Regenerate crds/*.yaml from the Rust types, and docs/model.md from the model
	$(CARGO) run --quiet -- crd --out-dir crds
	$(CARGO) run --quiet -- model --output markdown > docs/model.md
	cp crds/*.yaml charts/maturity-operator/crds/

.PHONY: tools
tools: ## Build (once, cached) etcd, kube-*, kubectl, kwok, helm, prometheus, promtool
	hack/build-tools.sh

.PHONY: cluster-up
cluster-up: ## Start the local control plane (kwok nodes) and Prometheus; prints how to use it
	hack/cluster-up.sh

.PHONY: cluster-down
cluster-down: ## Stop exactly what cluster-up started and remove its state
	hack/cluster-down.sh
