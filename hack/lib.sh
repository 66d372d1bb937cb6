#!/usr/bin/env bash
# Shared helpers for the hack/ scripts: where the cache lives, logging, failures that say where to look.
set -Eeuo pipefail

HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$HACK_DIR/.." && pwd)"
# shellcheck source=versions.env
source "$HACK_DIR/versions.env"

CACHE_DIR="${MATURITY_CACHE_DIR:-$HOME/.cache/maturity-operator}"
GO_VERSION_TAG="$(go env GOVERSION 2>/dev/null || echo go-missing)"
LOG_DIR="$CACHE_DIR/logs"
mkdir -p "$CACHE_DIR" "$LOG_DIR"

# Where each tool ends up. The folder name carries the version and the Go toolchain,
# so a changed pin never picks up a stale binary.
K8S_BIN="$CACHE_DIR/kubernetes-$KUBERNETES_VERSION-$GO_VERSION_TAG"
ETCD_BIN="$CACHE_DIR/etcd-$ETCD_VERSION-$GO_VERSION_TAG"
KWOK_BIN="$CACHE_DIR/kwok-$KWOK_VERSION-$GO_VERSION_TAG"
HELM_BIN="$CACHE_DIR/helm-$HELM_VERSION-$GO_VERSION_TAG"
PROM_BIN="$CACHE_DIR/prometheus-$PROMETHEUS_MODULE_VERSION-$GO_VERSION_TAG"
PLP_BIN="$CACHE_DIR/prom-label-proxy-$PROM_LABEL_PROXY_VERSION-$GO_VERSION_TAG"
SLOTH_BIN="$CACHE_DIR/sloth-$SLOTH_VERSION-$GO_VERSION_TAG"
AM_BIN="$CACHE_DIR/alertmanager-$ALERTMANAGER_VERSION-$GO_VERSION_TAG"
# kstatus is built from hack/kstatus: the folder also carries a digest of its source, so a
# changed main.go, go.mod or go.sum is built again.
KSTATUS_SRC="$HACK_DIR/kstatus"
KSTATUS_DIGEST="$({ cat "$KSTATUS_SRC/main.go" "$KSTATUS_SRC/go.mod" "$KSTATUS_SRC/go.sum" 2>/dev/null || true; } | sha256sum | cut -c1-12)"
KSTATUS_BIN="$CACHE_DIR/kstatus-$CLI_UTILS_VERSION-$KSTATUS_DIGEST-$GO_VERSION_TAG"
CONTROLLER_GEN_BIN="$CACHE_DIR/controller-gen-$CONTROLLER_TOOLS_VERSION-$GO_VERSION_TAG"
MONITORING_CRDS="$CACHE_DIR/crds-monitoring-$PROMETHEUS_OPERATOR_VERSION-controller-gen-$CONTROLLER_TOOLS_VERSION"
TOOL_CRDS="$CACHE_DIR/crds-tools-sloth-$SLOTH_VERSION-flagger-$FLAGGER_VERSION-chaos-mesh-$CHAOS_MESH_API_VERSION-controller-gen-$CONTROLLER_TOOLS_VERSION"
ROLLOUTS_CRDS="$CACHE_DIR/crds-argo-rollouts-$ARGO_ROLLOUTS_VERSION-controller-gen-$CONTROLLER_TOOLS_VERSION"
# cert-manager's binaries are built from our mains in hack/cert-manager/ too: their hash is in
# the folder name, so a changed main is rebuilt.
CERT_MANAGER_MAINS_HASH="$(cat "$HACK_DIR"/cert-manager/*/main.go 2>/dev/null | sha256sum | cut -c1-12)"
CERT_MANAGER_BIN="$CACHE_DIR/cert-manager-$CERT_MANAGER_VERSION-$GO_VERSION_TAG-$CERT_MANAGER_MAINS_HASH"
CERT_MANAGER_CRDS="$CACHE_DIR/crds-cert-manager-$CERT_MANAGER_VERSION"
# One folder of symlinks to the generated third-party CRDs (MATURITY_CRDS_DIR in cluster.env).
CRDS_DIR="$CACHE_DIR/crds"
# One folder of symlinks that scripts and tests put on PATH.
TOOLS_BIN="$CACHE_DIR/bin"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

need_cmd() {
  command -v "$1" >/dev/null 2>&1 || die "'$1' is not installed; $2"
}
