#!/usr/bin/env bash
# Builds the real Kubernetes binaries used by the tests from Go modules with the machine's Go
# toolchain, into a cache outside the repository keyed by version. Prints the cache directory on
# stdout when done.
#
#   scripts/build-controlplane.sh          etcd, kube-apiserver, kube-controller-manager
#   scripts/build-controlplane.sh --node   kubelet, kube-scheduler (the node of e2e/harness/node.ts)
#
# Both sets come from one wrapper module (k8s.io/kubernetes with its staging modules replaced by
# their published versions) built with the same version ldflags, so one warm module and build
# cache serves both. Honours KUBEBUILDER_ASSETS (controller-runtime's convention) for the control
# plane and GITOPS_NODE_ASSETS for the node: when it names a folder that holds the binaries,
# nothing is built. A killed build never leaves a half-written binary: each binary is linked to a
# temporary name and renamed into place only when complete.
set -euo pipefail

K8S_VERSION="${GITOPS_K8S_VERSION:-v1.36.3}"
ETCD_VERSION="${GITOPS_ETCD_VERSION:-v3.6.16}"
CACHE_ROOT="${GITOPS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/gitops}"
case "${1:-}" in
  "")
    WHAT=controlplane
    OUT="$CACHE_ROOT/controlplane/$K8S_VERSION-$ETCD_VERSION"
    BINARIES=(etcd kube-apiserver kube-controller-manager)
    ASSETS_VAR=KUBEBUILDER_ASSETS
    ;;
  --node)
    WHAT=node
    OUT="$CACHE_ROOT/node/$K8S_VERSION"
    BINARIES=(kubelet kube-scheduler)
    ASSETS_VAR=GITOPS_NODE_ASSETS
    ;;
  *) echo "usage: $0 [--node]" >&2; exit 2 ;;
esac
ASSETS="${!ASSETS_VAR:-}"
# Every k8s.io/kubernetes command that either set builds: one go.mod serves both.
K8S_COMMANDS=(kube-apiserver kube-controller-manager kubelet kube-scheduler)

start=$(date +%s)
step() { echo "[$WHAT +$(( $(date +%s) - start ))s] $*" >&2; }

have_all() {
  local dir=$1
  for b in "${BINARIES[@]}"; do [ -x "$dir/$b" ] || return 1; done
}

if [ -n "$ASSETS" ] && have_all "$ASSETS"; then
  step "using $ASSETS_VAR=$ASSETS"
  echo "$ASSETS"
  exit 0
fi
if have_all "$OUT"; then
  echo "$OUT"
  exit 0
fi

command -v go >/dev/null || { echo "build-controlplane: Go is required (https://go.dev/dl); or set $ASSETS_VAR to a folder with ${BINARIES[*]}" >&2; exit 1; }
mkdir -p "$OUT"
export GOFLAGS="${GOFLAGS:-} -mod=mod"
export CGO_ENABLED=0

minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
staging_version="v0.${K8S_VERSION#v1.}"

# The wrapper module: k8s.io/kubernetes replaces its k8s.io/* staging modules with local paths, so
# it cannot be built directly; a module that requires it and pins each staging module can.
prepare_k8s_module() {
  local work="$CACHE_ROOT/.work/k8s-$K8S_VERSION" tools
  mkdir -p "$work"
  cd "$work"
  tools=$(
    printf '//go:build tools\n\npackage tools\n\nimport (\n'
    for c in "${K8S_COMMANDS[@]}"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$c"; done
    printf ')\n'
  )
  if [ ! -f go.mod ] || ! grep -q "k8s.io/kubernetes $K8S_VERSION" go.mod; then
    step "resolving k8s.io/kubernetes@$K8S_VERSION modules"
    rm -f go.mod go.sum tools.go
    go mod init gitops.local/k8s >/dev/null 2>&1
    gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
    {
      echo "require k8s.io/kubernetes $K8S_VERSION"
      grep -oE '^\s*k8s.io/[a-z0-9-]+ => ./staging' "$gomod" | awk -v v="$staging_version" '{print "replace " $1 " => " $1 " " v}'
    } >> go.mod
  fi
  if [ "$(cat tools.go 2>/dev/null)" != "$tools" ]; then
    printf '%s\n' "$tools" > tools.go
    step "go mod tidy (downloads about 700 MB of modules on a cold machine)"
    go mod tidy >&2
  fi
}

build_k8s() {
  local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
  local b
  for b in "$@"; do
    if [ ! -x "$OUT/$b" ]; then
      step "building $b $K8S_VERSION (kube-apiserver about 4 minutes cold on 2 cores; others less with a warm cache)"
      go build -trimpath -ldflags="$ldflags" -o "$OUT/.$b.tmp.$$" "k8s.io/kubernetes/cmd/$b"
      mv -f "$OUT/.$b.tmp.$$" "$OUT/$b"
    fi
  done
}

build_etcd() {
  [ -x "$OUT/etcd" ] && return 0
  local work="$CACHE_ROOT/.work/etcd-$ETCD_VERSION"
  mkdir -p "$work"
  cd "$work"
  if [ ! -f go.mod ] || ! grep -q "go.etcd.io/etcd/server/v3 $ETCD_VERSION" go.mod; then
    step "resolving go.etcd.io/etcd/server/v3@$ETCD_VERSION"
    rm -f go.mod go.sum
    go mod init gitops.local/etcd >/dev/null 2>&1
    echo "require go.etcd.io/etcd/server/v3 $ETCD_VERSION" >> go.mod
    cat > tools.go <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
    go mod tidy >&2
  fi
  step "building etcd $ETCD_VERSION"
  go build -trimpath -ldflags="-s -w" -o "$OUT/.etcd.tmp.$$" go.etcd.io/etcd/server/v3
  mv -f "$OUT/.etcd.tmp.$$" "$OUT/etcd"
}

k8s_binaries=()
for b in "${BINARIES[@]}"; do
  [ "$b" = etcd ] || [ -x "$OUT/$b" ] || k8s_binaries+=("$b")
done
if [ ${#k8s_binaries[@]} -gt 0 ]; then
  prepare_k8s_module
  build_k8s "${k8s_binaries[@]}"
fi
if [ "$WHAT" = controlplane ]; then build_etcd; fi

step "$WHAT binaries ready in $OUT"
echo "$OUT"
