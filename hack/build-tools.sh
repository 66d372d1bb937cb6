#!/usr/bin/env bash
# Builds (once) every tool the local control plane needs from Go modules, pinned in
# hack/versions.env, and caches them under ~/.cache/maturity-operator/.
# Usage: hack/build-tools.sh [component...]   (default: all)
# Components: kubernetes etcd kwok helm prometheus prom-label-proxy alertmanager crds
# (third-party CRDs generated with controller-gen) kstatus (hack/kstatus: what Flux's
# health checks compute) cert-manager (its controller, cainjector and CRDs) (and, for
# `make bench` only, sloth)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
shopt -s extglob  # the KEEP globs of generate_crds

need_cmd go "install Go (1.24 or newer) first: the control-plane tools are built from Go modules"
need_cmd openssl "install openssl (apt-get install openssl): cluster certificates are made with it"

export CGO_ENABLED=0
export GOFLAGS="${GOFLAGS:--buildvcs=false}"

# run_logged NAME LOGFILE CMD...: runs CMD with output to LOGFILE; on failure says which
# component failed and where the log is, then exits non-zero.
run_logged() {
  local name="$1" logfile="$2"; shift 2
  if ! "$@" >>"$logfile" 2>&1; then
    printf 'ERROR: building %s failed. Last lines of %s:\n' "$name" "$logfile" >&2
    tail -n 25 "$logfile" >&2
    printf 'ERROR: building %s failed; full log: %s\n' "$name" "$logfile" >&2
    exit 1
  fi
}

build_kubernetes() {
  local out="$K8S_BIN" logfile="$LOG_DIR/build-kubernetes.log"
  if [[ -x "$out/kube-apiserver" && -x "$out/kube-controller-manager" && -x "$out/kube-scheduler" && -x "$out/kubectl" ]]; then
    log "kubernetes $KUBERNETES_VERSION: cached in $out"; return
  fi
  log "kubernetes $KUBERNETES_VERSION: building kube-apiserver, kube-controller-manager, kube-scheduler, kubectl (cold: 5-10 min on 2 cores; log: $logfile)"
  : >"$logfile"
  local mod="$CACHE_DIR/src/k8sbins-$KUBERNETES_VERSION"
  rm -rf "$mod"; mkdir -p "$mod"
  local minor="${KUBERNETES_VERSION#v1.}"; minor="${minor%%.*}"
  local staging="v0.${KUBERNETES_VERSION#v1.}"
  (
    cd "$mod"
    cat >go.mod <<GOMOD
module local.test/k8sbins

go 1.24.0

godebug default=go1.24

require k8s.io/kubernetes $KUBERNETES_VERSION
GOMOD
    # k8s.io/kubernetes requires its staging modules at v0.0.0 with local replaces that
    # do not apply to a dependency: replace each one with its published tag.
    run_logged kubernetes "$logfile" go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION"
    local upstream_mod
    upstream_mod="$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | python3 -c 'import json,sys;print(json.load(sys.stdin)["GoMod"])')"
    awk '$1 ~ /^k8s\.io\// && $2=="v0.0.0" {print $1}' "$upstream_mod" | sort -u | while read -r m; do
      go mod edit -replace "$m=$m@$staging"
    done
    cat >tools.go <<'GOSRC'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GOSRC
    run_logged kubernetes "$logfile" go mod tidy
    local ldf="-s -w" d
    d="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldf="$ldf -X $p.gitVersion=$KUBERNETES_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=$d"
    done
    mkdir -p "$out.tmp"
    run_logged kubernetes "$logfile" go build -trimpath -tags selinux,notest,grpcnotrace -ldflags "$ldf" -o "$out.tmp/" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
  )
  rm -rf "$out"; mv "$out.tmp" "$out"
  log "kubernetes $KUBERNETES_VERSION: built into $out"
}

build_etcd() {
  local out="$ETCD_BIN" logfile="$LOG_DIR/build-etcd.log"
  if [[ -x "$out/etcd" ]]; then log "etcd $ETCD_VERSION: cached in $out"; return; fi
  log "etcd $ETCD_VERSION: building (log: $logfile)"
  : >"$logfile"
  local mod="$CACHE_DIR/src/etcdbin-$ETCD_VERSION"
  rm -rf "$mod"; mkdir -p "$mod"
  (
    cd "$mod"
    # etcd's server module has relative replaces too, so it needs its own wrapper module
    # (kept apart from kubernetes so the two dependency graphs do not bump each other).
    run_logged etcd "$logfile" go mod init local.test/etcdbin
    run_logged etcd "$logfile" go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
    cat >tools.go <<'GOSRC'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GOSRC
    run_logged etcd "$logfile" go mod tidy
    mkdir -p "$out.tmp"
    run_logged etcd "$logfile" go build -trimpath -ldflags "-s -w" -o "$out.tmp/etcd" go.etcd.io/etcd/server/v3
  )
  rm -rf "$out"; mv "$out.tmp" "$out"
  log "etcd $ETCD_VERSION: built into $out"
}

go_install_into() { # name out logfile pkg@version...
  local name="$1" out="$2" logfile="$3"; shift 3
  mkdir -p "$out.tmp"
  local ldflags="-s -w"
  if [[ "$1" == "-ldflags" ]]; then ldflags="$2"; shift 2; fi
  run_logged "$name" "$logfile" env GOBIN="$out.tmp" go install -trimpath -ldflags "$ldflags" "$@"
  rm -rf "$out"; mv "$out.tmp" "$out"
}

build_kwok() {
  local out="$KWOK_BIN" logfile="$LOG_DIR/build-kwok.log"
  if [[ -x "$out/kwok" && -f "$out/upstream-stages.yaml" ]]; then log "kwok $KWOK_VERSION: cached in $out"; return; fi
  : >"$logfile"
  if [[ ! -x "$out/kwok" ]]; then
    log "kwok $KWOK_VERSION: building (log: $logfile)"
    go_install_into kwok "$out" "$logfile" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  fi
  # kwok run outside a cluster needs its node and pod lifecycle stages as a config file:
  # the "fast" set of its kustomize/stage folder (node ready + lease heartbeat, pod
  # complete and delete); hack/cluster-up.sh adds the project's pod-ready stages
  # (hack/kwok/pod-ready.yaml: kwok's fast one, and a slow one for annotated pods).
  log "kwok $KWOK_VERSION: writing its stages from the module's source"
  run_logged "kwok's module source" "$logfile" go mod download "sigs.k8s.io/kwok@$KWOK_VERSION"
  local src; src="$(go env GOMODCACHE)/sigs.k8s.io/kwok@$KWOK_VERSION/kustomize/stage"
  local f
  for f in "$src"/node/fast/node-initialize.yaml "$src"/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
           "$src"/pod/fast/pod-complete.yaml "$src"/pod/fast/pod-delete.yaml; do
    [[ -f "$f" ]] || { printf 'ERROR: kwok stage file %s not found in the Go module cache; log: %s\n' "$f" "$logfile" >&2; exit 1; }
    printf -- '---\n'; cat "$f"; printf '\n'
  done >"$out/upstream-stages.yaml.tmp"
  mv "$out/upstream-stages.yaml.tmp" "$out/upstream-stages.yaml"
  rm -f "$out/stages.yaml" "$TOOLS_BIN/stages.yaml"
  log "kwok $KWOK_VERSION: ready in $out"
}

build_helm() {
  local out="$HELM_BIN" logfile="$LOG_DIR/build-helm.log"
  if [[ -x "$out/helm" ]]; then log "helm $HELM_VERSION: cached in $out"; return; fi
  log "helm $HELM_VERSION: building (log: $logfile)"; : >"$logfile"
  go_install_into helm "$out" "$logfile" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  log "helm $HELM_VERSION: built into $out"
}

build_prometheus() {
  local out="$PROM_BIN" logfile="$LOG_DIR/build-prometheus.log"
  if [[ -x "$out/prometheus" && -x "$out/promtool" ]]; then log "prometheus $PROMETHEUS_MODULE_VERSION: cached in $out"; return; fi
  log "prometheus $PROMETHEUS_MODULE_VERSION: building prometheus and promtool (log: $logfile)"; : >"$logfile"
  # Built without the 'builtinassets' tag: the web UI is not embedded, the HTTP API is complete.
  local v="${PROMETHEUS_MODULE_VERSION#v0.}"  # v0.316.0 -> 316.0 -> 3.16.0
  local promver="${v:0:1}.${v:1}"
  local pv="github.com/prometheus/common/version"
  go_install_into prometheus "$out" "$logfile" -ldflags "-s -w -X $pv.Version=$promver -X $pv.Branch=module -X $pv.Revision=$PROMETHEUS_MODULE_VERSION" \
    "github.com/prometheus/prometheus/cmd/prometheus@$PROMETHEUS_MODULE_VERSION" \
    "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_MODULE_VERSION"
  log "prometheus $PROMETHEUS_MODULE_VERSION: built into $out"
}

build_prom_label_proxy() {
  local out="$PLP_BIN" logfile="$LOG_DIR/build-prom-label-proxy.log"
  if [[ -x "$out/prom-label-proxy" ]]; then log "prom-label-proxy $PROM_LABEL_PROXY_VERSION: cached in $out"; return; fi
  log "prom-label-proxy $PROM_LABEL_PROXY_VERSION: building (log: $logfile)"; : >"$logfile"
  go_install_into prom-label-proxy "$out" "$logfile" "github.com/prometheus-community/prom-label-proxy@$PROM_LABEL_PROXY_VERSION"
  log "prom-label-proxy $PROM_LABEL_PROXY_VERSION: built into $out"
}

build_alertmanager() {
  local out="$AM_BIN" logfile="$LOG_DIR/build-alertmanager.log"
  if [[ -x "$out/alertmanager" && -x "$out/amtool" ]]; then log "alertmanager $ALERTMANAGER_VERSION: cached in $out"; return; fi
  log "alertmanager $ALERTMANAGER_VERSION: building alertmanager and amtool (log: $logfile)"; : >"$logfile"
  # The module embeds its web UI's build output (ui/app/dist), which is not in the module:
  # build from a copy of its source with an empty UI in its place (the HTTP API is complete).
  run_logged alertmanager "$logfile" go mod download "github.com/prometheus/alertmanager@$ALERTMANAGER_VERSION"
  local src="$CACHE_DIR/src/alertmanager-$ALERTMANAGER_VERSION"
  rm -rf "$src" "$out.tmp"; mkdir -p "$CACHE_DIR/src" "$out.tmp"
  cp -r "$(go env GOMODCACHE)/github.com/prometheus/alertmanager@$ALERTMANAGER_VERSION" "$src"
  chmod -R u+w "$src"
  local d
  for d in elm mantine; do
    mkdir -p "$src/ui/app/dist/$d"
    printf '<!doctype html><title>Alertmanager</title><p>Web UI not built; the API is at /api/v2.\n' >"$src/ui/app/dist/$d/index.html"
  done
  local pv="github.com/prometheus/common/version"
  (
    cd "$src"
    run_logged alertmanager "$logfile" go build -trimpath \
      -ldflags "-s -w -X $pv.Version=${ALERTMANAGER_VERSION#v} -X $pv.Branch=module -X $pv.Revision=$ALERTMANAGER_VERSION" \
      -o "$out.tmp/" ./cmd/alertmanager ./cmd/amtool
  )
  rm -rf "$out"; mv "$out.tmp" "$out"
  log "alertmanager $ALERTMANAGER_VERSION: built into $out"
}

# Sloth: run as its own controller in tests/integrations.rs; `make bench` compares the
# Prometheus cost of its generated rules with ours.
build_sloth() {
  local out="$SLOTH_BIN" logfile="$LOG_DIR/build-sloth.log"
  if [[ -x "$out/sloth" ]]; then log "sloth $SLOTH_VERSION: cached in $out"; return; fi
  log "sloth $SLOTH_VERSION: building (log: $logfile)"; : >"$logfile"
  go_install_into sloth "$out" "$logfile" "github.com/slok/sloth/cmd/sloth@$SLOTH_VERSION"
  log "sloth $SLOTH_VERSION: built into $out"
}

# kstatus: the project's own small command (hack/kstatus) around kstatus's Compute, built
# from a copy of its folder with sigs.k8s.io/cli-utils at CLI_UTILS_VERSION (the version
# its go.mod requires, unless overridden from the environment).
build_kstatus() {
  local out="$KSTATUS_BIN" logfile="$LOG_DIR/build-kstatus.log"
  if [[ -x "$out/kstatus" ]]; then log "kstatus (cli-utils $CLI_UTILS_VERSION): cached in $out"; return; fi
  log "kstatus (cli-utils $CLI_UTILS_VERSION): building from $KSTATUS_SRC (log: $logfile)"; : >"$logfile"
  local src="$CACHE_DIR/src/kstatus-$CLI_UTILS_VERSION"
  rm -rf "$src" "$out.tmp"; mkdir -p "$src" "$out.tmp"
  cp "$KSTATUS_SRC/main.go" "$KSTATUS_SRC/go.mod" "$KSTATUS_SRC/go.sum" "$src/"
  (
    cd "$src"
    run_logged kstatus "$logfile" go mod edit -require "sigs.k8s.io/cli-utils@$CLI_UTILS_VERSION"
    run_logged kstatus "$logfile" go mod tidy
    run_logged kstatus "$logfile" go build -trimpath -ldflags "-s -w" -o "$out.tmp/kstatus" .
  )
  rm -rf "$out"; mv "$out.tmp" "$out"
  log "kstatus (cli-utils $CLI_UTILS_VERSION): built into $out"
}

# cert-manager: its controller and cainjector, from our mains in hack/cert-manager/ over the
# packages of its root module (the only one the module proxy serves: upstream's mains are
# the separate modules cmd/controller and cmd/cainjector), and its CRDs as the module ships
# them (deploy/crds: controller-gen's output, the schemas its Helm chart installs).
build_cert_manager() {
  local out="$CERT_MANAGER_BIN" crds="$CERT_MANAGER_CRDS" logfile="$LOG_DIR/build-cert-manager.log"
  local kinds=(certificates certificaterequests issuers clusterissuers)
  if [[ -x "$out/cert-manager-controller" && -x "$out/cert-manager-cainjector" && -f "$crds/cert-manager.io_clusterissuers.yaml" ]]; then
    log "cert-manager $CERT_MANAGER_VERSION: cached in $out"; return
  fi
  : >"$logfile"
  run_logged cert-manager "$logfile" go mod download "github.com/cert-manager/cert-manager@$CERT_MANAGER_VERSION"
  if [[ ! -f "$crds/cert-manager.io_clusterissuers.yaml" ]]; then
    local src k
    src="$(go env GOMODCACHE)/github.com/cert-manager/cert-manager@$CERT_MANAGER_VERSION/deploy/crds"
    rm -rf "$crds.tmp"; mkdir -p "$crds.tmp"
    for k in "${kinds[@]}"; do
      [[ -f "$src/cert-manager.io_$k.yaml" ]] || { printf 'ERROR: cert-manager CRD file %s not found in the Go module cache; log: %s\n' "$src/cert-manager.io_$k.yaml" "$logfile" >&2; exit 1; }
      cp "$src/cert-manager.io_$k.yaml" "$crds.tmp/"
    done
    chmod u+w "$crds.tmp"/*
    rm -rf "$crds"; mv "$crds.tmp" "$crds"
    log "cert-manager $CERT_MANAGER_VERSION: CRDs $(ls "$crds" | tr '\n' ' ')in $crds"
  fi
  if [[ ! -x "$out/cert-manager-controller" || ! -x "$out/cert-manager-cainjector" ]]; then
    log "cert-manager $CERT_MANAGER_VERSION: building cert-manager-controller and cert-manager-cainjector (cold: 5-8 min on 2 cores; log: $logfile)"
    local mod="$CACHE_DIR/src/cert-manager-$CERT_MANAGER_VERSION"
    rm -rf "$mod" "$out.tmp"; mkdir -p "$mod" "$out.tmp"
    cp -r "$HACK_DIR"/cert-manager/cert-manager-* "$mod/"
    (
      cd "$mod"
      run_logged cert-manager "$logfile" go mod init local.test/certmanager
      run_logged cert-manager "$logfile" go get "github.com/cert-manager/cert-manager@$CERT_MANAGER_VERSION"
      run_logged cert-manager "$logfile" go mod tidy
      run_logged cert-manager "$logfile" go build -trimpath \
        -ldflags "-s -w -X github.com/cert-manager/cert-manager/pkg/util.AppVersion=$CERT_MANAGER_VERSION" \
        -o "$out.tmp/" ./cert-manager-controller ./cert-manager-cainjector
    )
    rm -rf "$out"; mv "$out.tmp" "$out"
    log "cert-manager $CERT_MANAGER_VERSION: built into $out"
  fi
}

build_controller_gen() {
  local out="$CONTROLLER_GEN_BIN" logfile="$LOG_DIR/build-controller-gen.log"
  if [[ -x "$out/controller-gen" ]]; then return; fi
  log "controller-gen $CONTROLLER_TOOLS_VERSION: building (log: $logfile)"; : >"$logfile"
  go_install_into controller-gen "$out" "$logfile" "sigs.k8s.io/controller-tools/cmd/controller-gen@$CONTROLLER_TOOLS_VERSION"
}

# generate_crds NAME OUT KEEP MODULE@VERSION... -- PACKAGE...: generates the CRDs of the API
# types in PACKAGE... (Go import paths inside the MODULEs) with controller-gen, as each
# project's own `make generate` does (floats allowed, as they use them), and keeps the files
# whose names match the KEEP glob. CRD_OPTIONS adds options to controller-gen's crd
# generator (e.g. maxDescLen=0 for API types whose descriptions make a CRD too big to apply).
generate_crds() {
  local name="$1" out="$2" keep="$3"; shift 3
  local modules=()
  while [[ $# -gt 0 && "$1" != "--" ]]; do modules+=("$1"); shift; done
  shift
  local logfile="$LOG_DIR/crds-$name.log"
  if compgen -G "$out/$keep" >/dev/null; then log "$name CRDs: cached in $out"; return; fi
  build_controller_gen
  log "$name CRDs: generating from ${modules[*]} with controller-gen (log: $logfile)"; : >"$logfile"
  local mod="$CACHE_DIR/src/crds-$name"
  rm -rf "$mod" "$out.tmp"; mkdir -p "$mod" "$out.tmp"
  (
    cd "$mod"
    run_logged "$name CRDs" "$logfile" go mod init "local.test/crds$name"
    run_logged "$name CRDs" "$logfile" go get "${modules[@]}"
    { printf 'package crds\n\nimport (\n'; local p; for p in "$@"; do printf '\t_ "%s"\n' "$p"; done; printf ')\n'; } >tools.go
    run_logged "$name CRDs" "$logfile" go mod tidy
    local paths=() p
    for p in "$@"; do paths+=("paths=$p"); done
    run_logged "$name CRDs" "$logfile" "$CONTROLLER_GEN_BIN/controller-gen" "crd:crdVersions=v1,allowDangerousTypes=true${CRD_OPTIONS:+,$CRD_OPTIONS}" "${paths[@]}" "output:crd:dir=$out.tmp"
  )
  local f
  for f in "$out.tmp"/*; do
    # shellcheck disable=SC2053 # KEEP is a glob
    [[ "$(basename "$f")" == $keep ]] || rm -f "$f"
  done
  compgen -G "$out.tmp/$keep" >/dev/null || { printf 'ERROR: controller-gen wrote no %s for %s; log: %s\n' "$keep" "$name" "$logfile" >&2; exit 1; }
  rm -rf "$out"; mv "$out.tmp" "$out"
  log "$name CRDs: $(ls "$out" | tr '\n' ' ')in $out"
}

build_crds() {
  generate_crds monitoring "$MONITORING_CRDS" \
    'monitoring.coreos.com_@(prometheusrules|servicemonitors|podmonitors).yaml' \
    "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring@$PROMETHEUS_OPERATOR_VERSION" -- \
    github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1
  generate_crds tools "$TOOL_CRDS" \
    '@(sloth.slok.dev_prometheusservicelevels|flagger.app_canaries|chaos-mesh.org_@(schedules|workflows|podchaos)).yaml' \
    "github.com/slok/sloth@$SLOTH_VERSION" "github.com/fluxcd/flagger@$FLAGGER_VERSION" \
    "github.com/chaos-mesh/chaos-mesh/api@$CHAOS_MESH_API_VERSION" -- \
    github.com/slok/sloth/pkg/kubernetes/api/sloth/v1 \
    github.com/fluxcd/flagger/pkg/apis/flagger/v1beta1 \
    github.com/chaos-mesh/chaos-mesh/api/v1alpha1
  # Argo Rollouts' own CRDs are published without descriptions (its types embed whole pod
  # templates: with them, the Rollout CRD is 0.7 MB and its managed fields pass etcd's limit).
  CRD_OPTIONS=maxDescLen=0 generate_crds argo-rollouts "$ROLLOUTS_CRDS" \
    'argoproj.io_@(rollouts|analysisruns).yaml' \
    "github.com/argoproj/argo-rollouts@$ARGO_ROLLOUTS_VERSION" -- \
    github.com/argoproj/argo-rollouts/pkg/apis/rollouts/v1alpha1
}

link_tools() {
  mkdir -p "$TOOLS_BIN"
  local f
  for f in "$K8S_BIN"/* "$ETCD_BIN"/* "$KWOK_BIN"/* "$HELM_BIN"/* "$PROM_BIN"/* "$PLP_BIN"/* "$SLOTH_BIN"/* "$AM_BIN"/* "$KSTATUS_BIN"/* "$CERT_MANAGER_BIN"/*; do
    [[ -f "$f" ]] && ln -sf "$f" "$TOOLS_BIN/$(basename "$f")"
  done
  mkdir -p "$CRDS_DIR"
  for f in "$MONITORING_CRDS"/*.yaml "$TOOL_CRDS"/*.yaml "$ROLLOUTS_CRDS"/*.yaml "$CERT_MANAGER_CRDS"/*.yaml; do
    [[ -f "$f" ]] && ln -sf "$f" "$CRDS_DIR/$(basename "$f")"
  done
  return 0
}

components=("$@")
[[ ${#components[@]} -eq 0 ]] && components=(etcd kwok helm prometheus prom-label-proxy alertmanager sloth crds kstatus cert-manager kubernetes)
start=$(date +%s)
for c in "${components[@]}"; do
  case "$c" in
    kubernetes) build_kubernetes ;;
    etcd) build_etcd ;;
    kwok) build_kwok ;;
    helm) build_helm ;;
    prometheus) build_prometheus ;;
    prom-label-proxy) build_prom_label_proxy ;;
    sloth) build_sloth ;;
    crds) build_crds ;;
    alertmanager) build_alertmanager ;;
    kstatus) build_kstatus ;;
    cert-manager) build_cert_manager ;;
    *) die "unknown component '$c' (known: kubernetes etcd kwok helm prometheus prom-label-proxy alertmanager crds kstatus cert-manager sloth)" ;;
  esac
done
link_tools
log "tools ready in $TOOLS_BIN after $(( $(date +%s) - start ))s"
