#!/usr/bin/env bash
# `make demo`: builds what is needed, starts the local cluster and Prometheus, installs
# the CRDs, runs the operator, applies the examples into namespace `demo`, and shows them.
# The cluster keeps running afterwards so you can explore; `make cluster-down` stops it.
# Ctrl-C stops what this run started (the operator, the exporter, and the cluster if this
# run started it) and says what is left.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_DIR"
DEMO_START=$(date +%s)

CLUSTER_DIR="${MATURITY_CLUSTER_DIR:-$REPO_DIR/.cluster}"
export MATURITY_CLUSTER_DIR="$CLUSTER_DIR"

# What this run started, for the Ctrl-C cleanup.
STARTED_CLUSTER=false
STARTED=()
on_interrupt() {
  trap - INT TERM
  echo >&2
  log "interrupted: cleaning up what this run started"
  for name in "${STARTED[@]}"; do
    f="$CLUSTER_DIR/pids/$name.pid"
    if [[ -f "$f" ]] && kill -TERM "$(cat "$f")" 2>/dev/null; then
      log "stopped the $name"
    fi
    rm -f "$f"
    rm -f "${MATURITY_PROMETHEUS_TARGETS_DIR:-/nonexistent}/demo-$name.json"
  done
  if [[ " ${STARTED[*]} " == *" operator "* ]] && [[ "$STARTED_CLUSTER" == false ]]; then
    kubectl delete mutatingwebhookconfiguration maturity-operator-demo --ignore-not-found >/dev/null 2>&1 &&
      log "removed the demo's admission webhook registration"
  fi
  if [[ "$STARTED_CLUSTER" == true ]]; then
    "$HACK_DIR/cluster-down.sh" && log "stopped the local cluster this run had started"
  else
    log "the local cluster was running before this run and keeps running (make cluster-down stops it)"
  fi
  exit 130
}
trap on_interrupt INT TERM
# A failing command ends the run (set -e); say which, so it is not a silent exit.
# (Only the main shell says it: functions and subshells inherit the trap.)
trap '[[ $BASHPID == "$$" ]] && log "the demo failed at hack/demo.sh line $LINENO: $BASH_COMMAND"' ERR

# MATURITY_OPERATOR_BIN: an operator binary built already (the demo test passes its own).
if [[ -n "${MATURITY_OPERATOR_BIN:-}" ]]; then
  OPERATOR_BIN="$MATURITY_OPERATOR_BIN"
else
  log "building the operator"
  ${CARGO:-cargo} build --quiet
  OPERATOR_BIN="$REPO_DIR/target/debug/maturity-operator"
fi
[[ -f "$CLUSTER_DIR/cluster.env" ]] && [[ -f "$CLUSTER_DIR/pids/kube-apiserver.pid" ]] &&
  kill -0 "$(cat "$CLUSTER_DIR/pids/kube-apiserver.pid")" 2>/dev/null || STARTED_CLUSTER=true
flock -o "$REPO_DIR/.cluster.lock" "$HACK_DIR/cluster-up.sh"
# shellcheck disable=SC1091
source "$CLUSTER_DIR/cluster.env"
export PATH="$MATURITY_TOOLS_BIN:$PATH"

log "installing the CRDs"
kubectl apply --server-side -f crds/ >/dev/null
kubectl wait --for condition=Established --timeout=60s -f crds/ >/dev/null

running() { [[ -f "$CLUSTER_DIR/pids/$1.pid" ]] && kill -0 "$(cat "$CLUSTER_DIR/pids/$1.pid")" 2>/dev/null; }
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

# A synthetic workload: checkout answers 20 requests/s, 0.05% errors, in 50 ms; and the
# pods of namespace demo's Deployments serve traffic under their pod_template_hash, images
# ending in :bad failing half their requests (what a canary analysis looks at).
if ! running exporter; then
  eport=$(free_port)
  log "starting a synthetic exporter for service checkout and namespace demo's pods on 127.0.0.1:$eport"
  setsid "$OPERATOR_BIN" synthetic-exporter --addr "127.0.0.1:$eport" \
    --series "service=checkout,route=/pay:20:0.0005:0.05" \
    --follow-namespace demo --image-errors ':bad=0.5' >"$CLUSTER_DIR/logs/exporter.log" 2>&1 </dev/null &
  echo $! >"$CLUSTER_DIR/pids/exporter.pid"
  STARTED+=(exporter)
  printf '[{"targets":["127.0.0.1:%s"],"labels":{"namespace":"demo"}}]\n' "$eport" >"$MATURITY_PROMETHEUS_TARGETS_DIR/demo-exporter.json"
fi

if running operator; then
  log "operator already running (pid $(cat "$CLUSTER_DIR/pids/operator.pid"))"
else
  port=$(free_port)
  wport=$(free_port)
  log "starting the operator (metrics on http://127.0.0.1:$port/metrics, admission webhook on 127.0.0.1:$wport, log $CLUSTER_DIR/logs/operator.log)"
  # The operator keeps the key of its authors' proofs in its own namespace.
  kubectl create namespace demo --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  # Plain, unauthenticated metrics (allowed on loopback only): Prometheus scrapes them as is.
  # The operator runs as a user of its own (as its ServiceAccount would be in a pod), so the
  # drills and policies applied below as the admin have the admin as their author.
  KUBE_RS_DEBUG_IMPERSONATE_USER=maturity-operator-demo KUBE_RS_DEBUG_IMPERSONATE_GROUP=system:masters \
  setsid "$OPERATOR_BIN" run --http-addr "127.0.0.1:$port" --metrics-auth none \
    --prometheus-url "$MATURITY_PROMETHEUS_URL" --default-interval 15s --namespace demo \
    --webhook-addr "127.0.0.1:$wport" --webhook-url "https://127.0.0.1:$wport" \
    --webhook-configuration maturity-operator-demo >"$CLUSTER_DIR/logs/operator.log" 2>&1 </dev/null &
  echo $! >"$CLUSTER_DIR/pids/operator.pid"
  STARTED+=(operator)
  echo "$port" >"$CLUSTER_DIR/operator.port"
  # Prometheus scrapes the operator too: its metrics are what the Grafana dashboards show.
  printf '[{"targets":["127.0.0.1:%s"],"labels":{"job":"maturity-operator"}}]\n' "$port" >"$MATURITY_PROMETHEUS_TARGETS_DIR/demo-operator.json"
fi
port="$(cat "$CLUSTER_DIR/operator.port")"
for _ in $(seq 1 60); do
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  sleep 0.5
done
curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 || die "the operator did not become ready; log: $CLUSTER_DIR/logs/operator.log"
# Drills and canaries act with their author's rights, recorded by the webhook: wait until the
# API server calls it (a dry-run create comes back with an author).
probe_author() {
  kubectl create --dry-run=server -n demo -o jsonpath='{.metadata.annotations.maturity\.sre\.dev/author}' -f - 2>/dev/null <<'YAML'
apiVersion: maturity.sre.dev/v1alpha1
kind: DrillSchedule
metadata: {name: webhook-probe}
spec: {schedule: "0 0 1 1 *", target: {name: none}, action: {podKill: {count: 1}}, recoveryDeadline: 60s}
YAML
}
for _ in $(seq 1 60); do
  [[ -n "$(probe_author)" ]] && break
  sleep 0.5
done
[[ -n "$(probe_author)" ]] || die "the admission webhook does not record authors; log: $CLUSTER_DIR/logs/operator.log"

log "applying the examples into namespace demo"
kubectl create namespace demo --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl apply --server-side -n demo -f examples/ >/dev/null

# The operator only acts in namespace demo, so tests can share the cluster with it.
# A live canary: Deployment shop-web (4 replicas on kwok) governed by a fast policy.
log "canary: Deployment shop-web (4 replicas) and CanaryPolicy shop-web-fast (25% for 10 s, 50% for 10 s, a check every 5 s)"
# An earlier run left shop-web on another version (or, after Ctrl-C, held mid-rollout):
# start it afresh, so applying v1 does not begin a canary of its own.
if kubectl get deployment shop-web -n demo >/dev/null 2>&1; then
  kubectl delete deployment shop-web -n demo --cascade=foreground --wait --timeout=60s >/dev/null ||
    die "could not delete the earlier run's Deployment demo/shop-web"
fi
kubectl apply --server-side -n demo -f - >/dev/null <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: shop-web, labels: {app: shop-web, app.kubernetes.io/part-of: demo-shop}}
spec:
  replicas: 4
  selector: {matchLabels: {app: shop-web}}
  template:
    metadata: {labels: {app: shop-web}}
    spec: {containers: [{name: web, image: "shop/web:v1"}]}
---
apiVersion: maturity.sre.dev/v1alpha1
kind: CanaryPolicy
metadata: {name: shop-web-fast}
spec:
  selector: {matchLabels: {app.kubernetes.io/part-of: demo-shop}}
  steps: [{weight: 25, analyze: 10s}, {weight: 50, analyze: 10s}]
  analysis:
    interval: 5s
    failureLimit: 1
    onNoData: Inconclusive
    metrics:
      - name: error-ratio
        query: |
          (sum(rate(http_requests_total{deployment="{{deployment}}",pod_template_hash="{{canary_hash}}",code="500"}[10s])) or vector(0))
          / sum(rate(http_requests_total{deployment="{{deployment}}",pod_template_hash="{{canary_hash}}"}[10s]))
        max: 0.05
  rollback: Automatic
YAML
kubectl rollout status -n demo deployment/shop-web --timeout=60s >/dev/null
kubectl wait -n demo --for=condition=Ready --timeout=60s canarypolicy/shop-web-fast >/dev/null
sleep 2 # the API server picks up the webhook configuration through a watch

latest_start() { kubectl get cpol shop-web-fast -n demo -o jsonpath='{.status.rollouts[0].startedAt}' 2>/dev/null; }
# Follows the rollout that starts after `$1` (the newest rollout's startedAt before the
# change) until it ends, printing each new phase.
watch_rollout() {
  local since="$1" last="" phase=""
  for _ in $(seq 1 120); do
    if [[ "$(latest_start)" != "$since" ]]; then
      phase=$(kubectl get cpol shop-web-fast -n demo -o jsonpath='{.status.rollouts[0].phase} step {.status.rollouts[0].step}: {.status.rollouts[0].message}' 2>/dev/null)
      if [[ "$phase" != "$last" ]]; then echo "   $phase"; last="$phase"; fi
      case "$phase" in Promoted*|RolledBack*|Held*) return 0 ;; esac
    fi
    sleep 1
  done
  echo "   (still running after 120 s; see kubectl get cpol shop-web-fast -n demo -o yaml)"
}
# Waits until no rollout of shop-web is under way (e.g. from an earlier demo run).
settle() {
  for _ in $(seq 1 120); do
    case "$(kubectl get cpol shop-web-fast -n demo -o jsonpath='{.status.rollouts[0].phase}' 2>/dev/null)" in
      ""|Promoted|RolledBack|Held|Superseded|Released) return 0 ;;
    esac
    sleep 1
  done
}
current_image() { kubectl get deployment shop-web -n demo -o jsonpath='{.spec.template.spec.containers[0].image}'; }
settle
log "canary: releasing shop/web:v2 (a good version)"
since=$(latest_start)
kubectl set image -n demo deployment/shop-web web=shop/web:v2 >/dev/null
watch_rollout "$since"
log "canary: releasing shop/web:bad (half its requests fail)"
since=$(latest_start)
kubectl set image -n demo deployment/shop-web web=shop/web:bad >/dev/null
watch_rollout "$since"
echo "   shop-web now runs $(current_image)"

# A drill: kill one pod of shop-web now (the schedule itself is weekdays 10:00-14:00 Shanghai).
log "drill: DrillSchedule shop-web-podkill kills a pod of shop-web now (run-now annotation)"
last_run() { kubectl get drill shop-web-podkill -n demo -o jsonpath="{.status.runs[0].$1}" 2>/dev/null || true; }
earlier_run=$(last_run startedAt) # an earlier demo run's, if any: wait for a newer one
kubectl apply --server-side -n demo -f - >/dev/null <<YAML
apiVersion: maturity.sre.dev/v1alpha1
kind: DrillSchedule
metadata:
  name: shop-web-podkill
  annotations: {maturity.sre.dev/run-now: "$(date +%s)"}
spec:
  schedule: "0 10 * * 1-5"
  timeZone: Asia/Shanghai
  jitter: 4h
  target: {name: shop-web}
  action: {podKill: {count: 1}}
  checkInterval: 2s
  recoveryDeadline: 1m
YAML
for _ in $(seq 1 60); do
  [[ -z "$(kubectl get drill shop-web-podkill -n demo -o jsonpath='{.status.active.phase}')" &&
     -n "$(last_run result)" && "$(last_run startedAt)" != "$earlier_run" ]] && break
  sleep 1
done
echo "   $(kubectl get drill shop-web-podkill -n demo -o jsonpath='{.status.runs[0].result}: {.status.runs[0].reason}')"
echo "   next window (unannounced start inside it): $(kubectl get drill shop-web-podkill -n demo -o jsonpath='{.status.nextWindow.start} to {.status.nextWindow.end}')"
log "waiting (up to 90 s) until Prometheus has scraped the workload and the targets are measured"
data_available() { kubectl get rtt "$1" -n demo -o jsonpath='{.status.conditions[?(@.type=="DataAvailable")].status}' 2>/dev/null; }
for _ in $(seq 1 90); do
  [[ "$(data_available checkout-interactive)" == True && "$(data_available checkout-availability)" == True ]] && break
  sleep 1
done

log "waiting (up to 60 s) until the assessment payments has a level"
for _ in $(seq 1 60); do
  [[ -n "$(kubectl get ma payments -n demo -o jsonpath='{.status.level}' 2>/dev/null)" ]] && break
  sleep 1
done

echo
echo "== kubectl get maturity -n demo"
kubectl get maturity -n demo
echo
echo "== the status of every object (each kind's Ready condition)"
kubectl get maturity -n demo -o custom-columns='KIND:.kind,NAME:.metadata.name,READY:.status.conditions[?(@.type=="Ready")].status,REASON:.status.conditions[?(@.type=="Ready")].reason'
echo
echo "== conditions of the ResponseTimeTargets"
kubectl get rtt -n demo -o custom-columns='NAME:.metadata.name,READY:.status.conditions[?(@.type=="Ready")].reason,OBJECTIVE:.status.conditions[?(@.type=="ObjectiveMet")].message'

echo
echo "== assessment payments: level $(kubectl get ma payments -n demo -o jsonpath='{.status.level}') of target $(kubectl get ma payments -n demo -o jsonpath='{.spec.targetLevel}'); per capability and next steps:"
echo "== maturity-operator check payments -n demo (the CI gate; exit 0 met, 1 below target, 3 not evaluated)"
"$OPERATOR_BIN" check payments -n demo || echo "   (exit $?)"

echo
echo "== rollouts of CanaryPolicy shop-web-fast"
kubectl get cpol shop-web-fast -n demo -o jsonpath='{range .status.rollouts[*]}{.deployment} revision {.revision}: {.phase}, checks passed {.checks.passed} failed {.checks.failed}, exposure {.exposure}{"\n"}{end}'

echo
echo "== what the operator sees (http://127.0.0.1:$port/metrics)"
curl -fsS "http://127.0.0.1:$port/metrics" | grep -E '^maturity_operator_watched_resources|^maturity_canary_rollouts\{namespace="demo"|^maturity_drill_'


cat <<MSG

ResponseTimeTargets are measured from the synthetic checkout traffic: a fresh workload is
far below minRequestRate over a 28-day window, so checkout-interactive says LowTraffic;
incident-handling finds no resolved alert here and says NoData.
The canary policy shop-web-fast walked shop/web:v2 through its steps to Promoted and
rolled shop/web:bad back at its first failed check (docs/canary.md).
The drill shop-web-podkill killed one pod and measured the recovery (docs/drills.md).
The assessment payments shows the level its (empty) scope reaches and what the next level
misses (docs/maturity.md).

Explore:
  source $CLUSTER_DIR/cluster.env && export PATH=$MATURITY_TOOLS_BIN:\$PATH
  kubectl get maturity -A              # all four kinds
  kubectl explain responsetimetarget.spec
  kubectl get cpol shop-web-fast -n demo -o yaml   # every transition, check and exposure figure
  kubectl set image -n demo deployment/shop-web web=shop/web:v3   # another canary
  kubectl annotate drill shop-web-podkill -n demo --overwrite maturity.sre.dev/run-now=\$(date +%s)   # another drill
  kubectl apply -n demo -f tests/fixtures/invalid/rtt-objective-100.yaml   # see admission reject it
  Prometheus: \$MATURITY_PROMETHEUS_URL
Stop everything: make cluster-down
MSG
log "demo done in $(( $(date +%s) - DEMO_START )) s"
