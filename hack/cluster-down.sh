#!/usr/bin/env bash
# Stops exactly the processes hack/cluster-up.sh started (by the pid files it wrote,
# checking each pid still runs the binary it started) and removes the cluster's state.
# --keep-logs: keep the logs/ folder (used when start-up failed, so the logs can be read).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CLUSTER_DIR="${MATURITY_CLUSTER_DIR:-$REPO_DIR/.cluster}"
KEEP_LOGS=false
[[ "${1:-}" == "--keep-logs" ]] && KEEP_LOGS=true

if [[ ! -d "$CLUSTER_DIR/pids" ]]; then
  log "no local cluster state in $CLUSTER_DIR: nothing to stop"
  exit 0
fi

# Every component is throwaway: ask them all to stop at once, then wait (10 s at most)
# and kill what is left.
declare -A started=()
for name in operator exporter prometheus kwok kube-scheduler kube-controller-manager kube-apiserver etcd; do
  f="$CLUSTER_DIR/pids/$name.pid"
  [[ -f "$f" ]] || continue
  pid="$(cat "$f")"
  binary="$name"; [[ "$name" == operator || "$name" == exporter ]] && binary=maturity-operator
  # Only a pid that still runs the binary we started is ours (pids are reused).
  if kill -0 "$pid" 2>/dev/null && [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "${binary:0:15}" ]]; then
    kill -TERM "$pid" 2>/dev/null || true
    started[$name]=$pid
  fi
  rm -f "$f"
done
for _ in $(seq 1 100); do
  alive=0
  for name in "${!started[@]}"; do kill -0 "${started[$name]}" 2>/dev/null && alive=1; done
  (( alive )) || break
  sleep 0.1
done
for name in "${!started[@]}"; do
  pid="${started[$name]}"
  if kill -0 "$pid" 2>/dev/null; then
    log "$name (pid $pid) did not stop in 10s: killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  log "stopped $name (pid $pid)"
done

if $KEEP_LOGS; then
  find "$CLUSTER_DIR" -mindepth 1 -maxdepth 1 ! -name logs -exec rm -rf {} +
  log "cluster stopped; logs kept in $CLUSTER_DIR/logs"
else
  rm -rf "$CLUSTER_DIR"
  log "cluster stopped; removed $CLUSTER_DIR"
fi
