#!/usr/bin/env bash
# `make bench`: builds the tools (cached) and the operator in release, starts the local
# cluster (or reuses a running one), and runs tests/bench/scale.rs, which prints its figures
# and writes docs/bench.md. Not part of `make test`.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_DIR"

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
log "starting the local cluster"
flock -o "$REPO_DIR/.cluster.lock" "$HACK_DIR/cluster-up.sh"
log "running the benchmark (about 70 minutes; MATURITY_BENCH_SIZES=1000 MATURITY_BENCH_COST=0 for a short run)"
${CARGO:-cargo} bench --bench scale
