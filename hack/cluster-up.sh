#!/usr/bin/env bash
# Starts a local control plane on free loopback ports: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kwok (with fake nodes) and Prometheus.
# State (certificates, data, logs, pid files, kubeconfig) lives in $MATURITY_CLUSTER_DIR
# (default: <repo>/.cluster). hack/cluster-down.sh stops exactly what this started.
#
# Environment: MATURITY_CLUSTER_DIR, MATURITY_FAKE_NODES (default 3),
# MATURITY_APISERVER_EXTRA_ARGS (added to kube-apiserver's flags, e.g. feature gates).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CLUSTER_DIR="${MATURITY_CLUSTER_DIR:-$REPO_DIR/.cluster}"
FAKE_NODES="${MATURITY_FAKE_NODES:-3}"

# Bumped when what this script sets up changes: a cluster started by an older version is
# stopped and started again (2: the API server authenticates to webhooks with a client
# certificate; 3: kwok has a slow pod-ready stage for annotated pods, and the API
# server's flags are in apiserver.args).
LAYOUT=3

if [[ -f "$CLUSTER_DIR/cluster.env" ]]; then
  # shellcheck disable=SC1091
  source "$CLUSTER_DIR/cluster.env"
  if [[ "${MATURITY_CLUSTER_LAYOUT:-1}" == "$LAYOUT" ]] &&
     curl -fsS --max-time 2 --cacert "$CLUSTER_DIR/pki/ca.crt" --cert "$CLUSTER_DIR/pki/admin.crt" \
       --key "$CLUSTER_DIR/pki/admin.key" "$MATURITY_APISERVER_URL/readyz" >/dev/null 2>&1; then
    log "cluster already running (state in $CLUSTER_DIR); use it with: export KUBECONFIG=$KUBECONFIG"
    exit 0
  fi
  if [[ "${MATURITY_CLUSTER_LAYOUT:-1}" != "$LAYOUT" ]]; then
    log "the cluster in $CLUSTER_DIR was set up by an older hack/cluster-up.sh: starting it again"
  else
    log "stale cluster state in $CLUSTER_DIR: cleaning it up first"
  fi
  "$HACK_DIR/cluster-down.sh"
fi

need_cmd openssl "apt-get install openssl"
need_cmd curl "apt-get install curl"
need_cmd python3 "python3 is used to find free ports"
"$HACK_DIR/build-tools.sh" >&2
export PATH="$TOOLS_BIN:$PATH"

mkdir -p "$CLUSTER_DIR"/{pki,logs,pids,etcd,prometheus/data,prometheus/targets,prometheus/rules}
PKI="$CLUSTER_DIR/pki"

on_error() {
  printf 'ERROR: the local cluster did not start; stopping what was started.\n' >&2
  "$HACK_DIR/cluster-down.sh" --keep-logs >&2 || true
}
trap on_error ERR

# --- free ports -------------------------------------------------------------------
read -r ETCD_PORT ETCD_PEER_PORT APISERVER_PORT KCM_PORT SCHED_PORT KWOK_PORT PROM_PORT < <(python3 - <<'PY'
import socket
socks=[]
for _ in range(7):
    s=socket.socket(); s.bind(("127.0.0.1",0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
)

# --- certificates -----------------------------------------------------------------
log "generating certificates in $PKI"
(
  cd "$PKI"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 30 -subj "/CN=maturity-local-ca" >/dev/null 2>&1
  cat >apiserver.ext <<EXT
subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc
extendedKeyUsage=serverAuth
EXT
  openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj "/CN=kube-apiserver" >/dev/null 2>&1
  openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out apiserver.crt -days 30 -extfile apiserver.ext >/dev/null 2>&1
  printf 'extendedKeyUsage=clientAuth\n' >client.ext
  openssl req -newkey rsa:2048 -nodes -keyout admin.key -out admin.csr -subj "/O=system:masters/CN=admin" >/dev/null 2>&1
  openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out admin.crt -days 30 -extfile client.ext >/dev/null 2>&1
  # The API server's client certificate for admission webhooks, from a CA of its own: a
  # webhook given --webhook-client-ca-file webhook-client-ca.crt answers only the API server.
  openssl req -x509 -newkey rsa:2048 -nodes -keyout webhook-client-ca.key -out webhook-client-ca.crt -days 30 -subj "/CN=maturity-local-webhook-client-ca" >/dev/null 2>&1
  openssl req -newkey rsa:2048 -nodes -keyout webhook-client.key -out webhook-client.csr -subj "/CN=kube-apiserver-webhook-client" >/dev/null 2>&1
  openssl x509 -req -in webhook-client.csr -CA webhook-client-ca.crt -CAkey webhook-client-ca.key -CAcreateserial -out webhook-client.crt -days 30 -extfile client.ext >/dev/null 2>&1
  openssl genrsa -out sa.key 2048 >/dev/null 2>&1
  openssl rsa -in sa.key -pubout -out sa.pub >/dev/null 2>&1
)

KUBECONFIG_FILE="$CLUSTER_DIR/kubeconfig"
APISERVER_URL="https://127.0.0.1:$APISERVER_PORT"
cat >"$KUBECONFIG_FILE" <<KCFG
apiVersion: v1
kind: Config
clusters:
- name: maturity-local
  cluster:
    server: $APISERVER_URL
    certificate-authority: $PKI/ca.crt
users:
- name: admin
  user:
    client-certificate: $PKI/admin.crt
    client-key: $PKI/admin.key
contexts:
- name: maturity-local
  context: {cluster: maturity-local, user: admin}
current-context: maturity-local
KCFG

# The API server presents webhook-client.crt to every admission webhook ("*"), as
# https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#authenticate-apiservers
# describes.
cat >"$PKI/webhook-kubeconfig" <<WKCFG
apiVersion: v1
kind: Config
users:
- name: "*"
  user:
    client-certificate: $PKI/webhook-client.crt
    client-key: $PKI/webhook-client.key
WKCFG
cat >"$PKI/admission.yaml" <<ADM
apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
- name: MutatingAdmissionWebhook
  configuration:
    apiVersion: apiserver.config.k8s.io/v1
    kind: WebhookAdmissionConfiguration
    kubeConfigFile: $PKI/webhook-kubeconfig
- name: ValidatingAdmissionWebhook
  configuration:
    apiVersion: apiserver.config.k8s.io/v1
    kind: WebhookAdmissionConfiguration
    kubeConfigFile: $PKI/webhook-kubeconfig
ADM

# --- process helpers ----------------------------------------------------------------
# start NAME CMD...: starts CMD detached, output to logs/NAME.log, pid to pids/NAME.pid.
start() {
  local name="$1"; shift
  setsid "$@" >"$CLUSTER_DIR/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$CLUSTER_DIR/pids/$name.pid"
}

# wait_for NAME SECONDS CHECK...: polls CHECK until it succeeds; on timeout or when NAME's
# process died, says which component failed and where its log is.
wait_for() {
  local name="$1" secs="$2"; shift 2
  local deadline=$(( $(date +%s) + secs ))
  local pid; pid="$(cat "$CLUSTER_DIR/pids/$name.pid")"
  until "$@" >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null; then
      printf 'ERROR: %s exited during start-up. Last lines of %s:\n' "$name" "$CLUSTER_DIR/logs/$name.log" >&2
      tail -n 20 "$CLUSTER_DIR/logs/$name.log" >&2
      printf 'ERROR: %s failed to start; log: %s\n' "$name" "$CLUSTER_DIR/logs/$name.log" >&2
      return 1
    fi
    if (( $(date +%s) > deadline )); then
      printf 'ERROR: %s not ready after %ss. Last lines of %s:\n' "$name" "$secs" "$CLUSTER_DIR/logs/$name.log" >&2
      tail -n 20 "$CLUSTER_DIR/logs/$name.log" >&2
      printf 'ERROR: %s failed to start; log: %s\n' "$name" "$CLUSTER_DIR/logs/$name.log" >&2
      return 1
    fi
    sleep 0.5
  done
}

api_ok() { curl -fsS --max-time 2 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" "$APISERVER_URL$1"; }
kc() { kubectl --kubeconfig "$KUBECONFIG_FILE" "$@"; }

# --- etcd -------------------------------------------------------------------------
log "starting etcd on 127.0.0.1:$ETCD_PORT"
start etcd etcd --name local --data-dir "$CLUSTER_DIR/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "local=http://127.0.0.1:$ETCD_PEER_PORT" --unsafe-no-fsync --quota-backend-bytes=2147483648 \
  --listen-metrics-urls "" --log-level warn
wait_for etcd 30 curl -fsS --max-time 2 "http://127.0.0.1:$ETCD_PORT/health"

# --- kube-apiserver -----------------------------------------------------------------
log "starting kube-apiserver on $APISERVER_URL"
# Every flag but the port, also written to apiserver.args: tests start a second API server
# on the same etcd with exactly these flags, to stop and restart it (tests/faults.rs).
# shellcheck disable=SC2206
APISERVER_ARGS=(
  --etcd-servers "http://127.0.0.1:$ETCD_PORT"
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1
  --cert-dir "$PKI" --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key"
  --client-ca-file "$PKI/ca.crt" --authorization-mode RBAC --allow-privileged=true
  --service-account-issuer https://kubernetes.default.svc --service-account-key-file "$PKI/sa.pub"
  --service-account-signing-key-file "$PKI/sa.key" --service-cluster-ip-range 10.96.0.0/16
  --endpoint-reconciler-type none --enable-priority-and-fairness=false
  --admission-control-config-file "$PKI/admission.yaml"
  ${MATURITY_APISERVER_EXTRA_ARGS:-}
)
printf '%s\n' "${APISERVER_ARGS[@]}" >"$CLUSTER_DIR/apiserver.args"
start kube-apiserver kube-apiserver "${APISERVER_ARGS[@]}" --secure-port "$APISERVER_PORT"
wait_for kube-apiserver 90 api_ok /readyz

# --- kube-controller-manager and kube-scheduler -------------------------------------
log "starting kube-controller-manager and kube-scheduler"
start kube-controller-manager kube-controller-manager --kubeconfig "$KUBECONFIG_FILE" \
  --authentication-kubeconfig "$KUBECONFIG_FILE" --authorization-kubeconfig "$KUBECONFIG_FILE" \
  --leader-elect=false --bind-address 127.0.0.1 --secure-port "$KCM_PORT" \
  --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
  --use-service-account-credentials=false --controllers '*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-route'
start kube-scheduler kube-scheduler --kubeconfig "$KUBECONFIG_FILE" \
  --authentication-kubeconfig "$KUBECONFIG_FILE" --authorization-kubeconfig "$KUBECONFIG_FILE" \
  --leader-elect=false --bind-address 127.0.0.1 --secure-port "$SCHED_PORT"
kcm_ok() { curl -fsSk --max-time 2 "https://127.0.0.1:$KCM_PORT/healthz"; }
sched_ok() { curl -fsSk --max-time 2 "https://127.0.0.1:$SCHED_PORT/healthz"; }
wait_for kube-controller-manager 60 kcm_ok
wait_for kube-scheduler 60 sched_ok

# --- kwok and fake nodes ------------------------------------------------------------
log "starting kwok with $FAKE_NODES fake nodes"
cat "$TOOLS_BIN/upstream-stages.yaml" "$HACK_DIR/kwok/pod-ready.yaml" >"$CLUSTER_DIR/kwok-stages.yaml"
start kwok kwok --kubeconfig "$KUBECONFIG_FILE" --config "$CLUSTER_DIR/kwok-stages.yaml" --manage-all-nodes=false \
  --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
  --cidr 10.244.0.0/16 --node-ip 127.0.0.1 --node-lease-duration-seconds 40 \
  --server-address "127.0.0.1:$KWOK_PORT"
kwok_ok() { curl -fsS --max-time 2 "http://127.0.0.1:$KWOK_PORT/healthz"; }
wait_for kwok 60 kwok_ok
for i in $(seq 0 $(( FAKE_NODES - 1 ))); do
  cat <<NODE
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations: {kwok.x-k8s.io/node: fake, node.alpha.kubernetes.io/ttl: "0"}
  labels: {type: kwok, kubernetes.io/os: linux, kubernetes.io/arch: amd64, kubernetes.io/hostname: kwok-node-$i}
status:
  allocatable: {cpu: "32", memory: 256Gi, pods: "110"}
  capacity: {cpu: "32", memory: 256Gi, pods: "110"}
  nodeInfo: {architecture: amd64, operatingSystem: linux, kubeletVersion: fake, kubeProxyVersion: fake}
---
NODE
done >"$CLUSTER_DIR/nodes.yaml"
kc apply -f "$CLUSTER_DIR/nodes.yaml" >>"$CLUSTER_DIR/logs/kwok.log" 2>&1
nodes_ready() { [[ "$(kc get nodes -l type=kwok -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c True)" -ge "$FAKE_NODES" ]]; }
wait_for kwok 60 nodes_ready

# --- Prometheus ---------------------------------------------------------------------
PROM_DIR="$CLUSTER_DIR/prometheus"
cat >"$PROM_DIR/prometheus.yml" <<PROMCFG
# Generated by hack/cluster-up.sh. Tests add scrape targets as JSON files in targets/
# (file_sd: picked up within seconds) and rule files in rules/ (then POST /-/reload).
global:
  scrape_interval: 2s
  evaluation_interval: 2s
rule_files:
  - $PROM_DIR/rules/*.yml
  - $PROM_DIR/rules/*.yaml
scrape_configs:
  - job_name: prometheus
    static_configs: [{targets: ["127.0.0.1:$PROM_PORT"]}]
  - job_name: local
    scrape_interval: 1s
    scrape_timeout: 1s
    file_sd_configs:
      - files: ["$PROM_DIR/targets/*.json"]
        refresh_interval: 2s
PROMCFG
log "starting Prometheus on http://127.0.0.1:$PROM_PORT"
start prometheus prometheus --config.file "$PROM_DIR/prometheus.yml" --storage.tsdb.path "$PROM_DIR/data" \
  --web.listen-address "127.0.0.1:$PROM_PORT" --web.enable-lifecycle --storage.tsdb.retention.time 1d
wait_for prometheus 60 curl -fsS --max-time 2 "http://127.0.0.1:$PROM_PORT/-/ready"

cat >"$CLUSTER_DIR/cluster.env" <<ENV
# Written by hack/cluster-up.sh; read by tests and scripts.
export KUBECONFIG=$KUBECONFIG_FILE
export MATURITY_CLUSTER_DIR=$CLUSTER_DIR
export MATURITY_APISERVER_URL=$APISERVER_URL
export MATURITY_PROMETHEUS_URL=http://127.0.0.1:$PROM_PORT
export MATURITY_PROMETHEUS_TARGETS_DIR=$PROM_DIR/targets
export MATURITY_PROMETHEUS_RULES_DIR=$PROM_DIR/rules
export MATURITY_TOOLS_BIN=$TOOLS_BIN
export MATURITY_CRDS_DIR=$CRDS_DIR
export MATURITY_CLUSTER_LAYOUT=$LAYOUT
ENV
trap - ERR
cat >&2 <<DONE

Local cluster is up (state and logs in $CLUSTER_DIR).
  kube-apiserver  $APISERVER_URL      ($(kc get nodes --no-headers | wc -l) kwok nodes)
  Prometheus      http://127.0.0.1:$PROM_PORT
Use it:
  source $CLUSTER_DIR/cluster.env     # sets KUBECONFIG and MATURITY_* variables
  export PATH=$TOOLS_BIN:\$PATH        # kubectl, helm, promtool of the pinned versions
  kubectl get nodes
Stop it: make cluster-down
DONE
