#!/usr/bin/env bash
# `make test` after fmt and clippy: builds the tools (cached), starts the local cluster
# (or reuses a running one), runs every test, and stops the cluster if it started it.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_DIR"

start=$(date +%s)
CLUSTER_DIR="${MATURITY_CLUSTER_DIR:-$REPO_DIR/.cluster}"
export MATURITY_CLUSTER_DIR="$CLUSTER_DIR"

started_here=false
[[ -f "$CLUSTER_DIR/cluster.env" ]] || started_here=true
cleanup() {
  if $started_here; then "$HACK_DIR/cluster-down.sh" || true; fi
}
trap cleanup EXIT

log "building the control-plane tools (cached after the first run)"
"$HACK_DIR/build-tools.sh"
tools_done=$(date +%s)
log "starting the local cluster"
flock -o "$REPO_DIR/.cluster.lock" "$HACK_DIR/cluster-up.sh"
cluster_done=$(date +%s)

log "building the operator with the otlp feature (as the image is; tests/telemetry.rs runs it)"
${CARGO:-cargo} build --features otlp --bin maturity-operator --target-dir target/otlp

log "running the test suite"
${CARGO:-cargo} test --all-targets --no-fail-fast
end=$(date +%s)
log "make test: tools $(( tools_done - start ))s, cluster start $(( cluster_done - tools_done ))s, cargo test $(( end - cluster_done ))s, total $(( end - start ))s"
