#!/usr/bin/env bash
# `make demo`: builds what is needed, starts the local cluster and Prometheus, installs
# the CRDs, runs the operator, applies the examples into namespace `demo`, and shows them.
# The cluster keeps running afterwards so you can explore; `make cluster-down` stops it.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_DIR"

CLUSTER_DIR="${MATURITY_CLUSTER_DIR:-$REPO_DIR/.cluster}"
export MATURITY_CLUSTER_DIR="$CLUSTER_DIR"

log "building the operator"
${CARGO:-cargo} build --quiet
flock -o "$REPO_DIR/.cluster.lock" "$HACK_DIR/cluster-up.sh"
# shellcheck disable=SC1091
source "$CLUSTER_DIR/cluster.env"
export PATH="$MATURITY_TOOLS_BIN:$PATH"

log "installing the CRDs"
kubectl apply --server-side -f crds/ >/dev/null
kubectl wait --for condition=Established --timeout=60s -f crds/ >/dev/null

running() { [[ -f "$CLUSTER_DIR/pids/$1.pid" ]] && kill -0 "$(cat "$CLUSTER_DIR/pids/$1.pid")" 2>/dev/null; }
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

# A synthetic workload: checkout answers 20 requests/s, 0.05% errors, in 50 ms.
if ! running exporter; then
  eport=$(free_port)
  log "starting a synthetic exporter for service checkout on 127.0.0.1:$eport"
  setsid target/debug/maturity-operator synthetic-exporter --addr "127.0.0.1:$eport" \
    --series "service=checkout,route=/pay:20:0.0005:0.05" >"$CLUSTER_DIR/logs/exporter.log" 2>&1 </dev/null &
  echo $! >"$CLUSTER_DIR/pids/exporter.pid"
  printf '[{"targets":["127.0.0.1:%s"],"labels":{"namespace":"demo"}}]\n' "$eport" >"$MATURITY_PROMETHEUS_TARGETS_DIR/demo-exporter.json"
fi

if running operator; then
  log "operator already running (pid $(cat "$CLUSTER_DIR/pids/operator.pid"))"
else
  port=$(free_port)
  log "starting the operator (metrics on http://127.0.0.1:$port/metrics, log $CLUSTER_DIR/logs/operator.log)"
  setsid target/debug/maturity-operator run --http-addr "127.0.0.1:$port" \
    --prometheus-url "$MATURITY_PROMETHEUS_URL" --default-interval 15s >"$CLUSTER_DIR/logs/operator.log" 2>&1 </dev/null &
  echo $! >"$CLUSTER_DIR/pids/operator.pid"
  echo "$port" >"$CLUSTER_DIR/operator.port"
fi
port="$(cat "$CLUSTER_DIR/operator.port")"
for _ in $(seq 1 60); do
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  sleep 0.5
done
curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 || die "the operator did not become ready; log: $CLUSTER_DIR/logs/operator.log"

log "applying the examples into namespace demo"
kubectl create namespace demo --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl apply --server-side -n demo -f examples/ >/dev/null
log "waiting (up to 90 s) until Prometheus has scraped the workload and the targets are measured"
data_available() { kubectl get rtt "$1" -n demo -o jsonpath='{.status.conditions[?(@.type=="DataAvailable")].status}' 2>/dev/null; }
for _ in $(seq 1 90); do
  [[ "$(data_available checkout-interactive)" == True && "$(data_available checkout-availability)" == True ]] && break
  sleep 1
done

echo
echo "== kubectl get maturity -n demo"
kubectl get maturity -n demo
echo
echo "== conditions of the ResponseTimeTargets"
kubectl get rtt -n demo -o custom-columns='NAME:.metadata.name,READY:.status.conditions[?(@.type=="Ready")].reason,OBJECTIVE:.status.conditions[?(@.type=="ObjectiveMet")].message'

echo
echo "== what the operator sees (http://127.0.0.1:$port/metrics)"
curl -fsS "http://127.0.0.1:$port/metrics" | grep '^maturity_operator_watched_resources'
cat <<MSG

ResponseTimeTargets are measured from the synthetic checkout traffic: a fresh workload is
far below minRequestRate over a 28-day window, so checkout-interactive says LowTraffic;
incident-handling finds no resolved alert here and says NoData.
Canaries, drills and levels arrive with the next issues, and their status with them.

Explore:
  source $CLUSTER_DIR/cluster.env && export PATH=$MATURITY_TOOLS_BIN:\$PATH
  kubectl get maturity -A              # all four kinds
  kubectl explain responsetimetarget.spec
  kubectl apply -n demo -f tests/fixtures/invalid/rtt-objective-100.yaml   # see admission reject it
  Prometheus: \$MATURITY_PROMETHEUS_URL
Stop everything: make cluster-down
MSG
