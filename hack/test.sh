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
  log "target/ holds $(du -sh target 2>/dev/null | cut -f1)"
  if $started_here; then "$HACK_DIR/cluster-down.sh" || true; fi
}
trap cleanup EXIT

# The build needs several gigabytes (44 test binaries, the otlp build); say so up front
# rather than as a linker's Bus error halfway through.
free_gb=$(df -Pk "$REPO_DIR" | awk 'NR==2 {print int($4 / 1048576)}')
log "free disk where the build goes: ${free_gb} GiB"
if (( free_gb < 8 )); then
  log "warning: less than 8 GiB free; a cold target/ takes about 6 GiB (and empty Go caches about 10 GB more), see docs/development.md"
fi

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
