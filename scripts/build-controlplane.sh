#!/usr/bin/env bash
# Builds the real Kubernetes control plane used by the tests (etcd, kube-apiserver,
# kube-controller-manager) from Go modules with the machine's Go toolchain, into a cache
# outside the repository keyed by version. Prints the cache directory on stdout when done.
#
# Honours KUBEBUILDER_ASSETS (controller-runtime's convention): when it names a folder that holds
# the three binaries, nothing is built. A killed build never leaves a half-written binary: each
# binary is linked to a temporary name and renamed into place only when complete.
set -euo pipefail

K8S_VERSION="${GITOPS_K8S_VERSION:-v1.36.3}"
ETCD_VERSION="${GITOPS_ETCD_VERSION:-v3.6.16}"
CACHE_ROOT="${GITOPS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/gitops}"
OUT="$CACHE_ROOT/controlplane/$K8S_VERSION-$ETCD_VERSION"
BINARIES=(etcd kube-apiserver kube-controller-manager)

start=$(date +%s)
step() { echo "[controlplane +$(( $(date +%s) - start ))s] $*" >&2; }

have_all() {
  local dir=$1
  for b in "${BINARIES[@]}"; do [ -x "$dir/$b" ] || return 1; done
}

if [ -n "${KUBEBUILDER_ASSETS:-}" ] && have_all "$KUBEBUILDER_ASSETS"; then
  step "using KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS"
  echo "$KUBEBUILDER_ASSETS"
  exit 0
fi
if have_all "$OUT"; then
  echo "$OUT"
  exit 0
fi

command -v go >/dev/null || { echo "build-controlplane: Go is required (https://go.dev/dl); or set KUBEBUILDER_ASSETS to a folder with etcd, kube-apiserver and kube-controller-manager" >&2; exit 1; }
mkdir -p "$OUT"
WORK="$CACHE_ROOT/controlplane/.work-$K8S_VERSION-$ETCD_VERSION"
mkdir -p "$WORK/k8s" "$WORK/etcd"
export GOFLAGS="${GOFLAGS:-} -mod=mod"
export CGO_ENABLED=0

minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
staging_version="v0.${K8S_VERSION#v1.}"

if [ ! -x "$OUT/kube-apiserver" ] || [ ! -x "$OUT/kube-controller-manager" ]; then
  cd "$WORK/k8s"
  if [ ! -f go.mod ] || ! grep -q "k8s.io/kubernetes $K8S_VERSION" go.mod; then
    step "resolving k8s.io/kubernetes@$K8S_VERSION modules"
    rm -f go.mod go.sum
    go mod init gitops.local/controlplane >/dev/null 2>&1
    gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
    {
      echo "require k8s.io/kubernetes $K8S_VERSION"
      grep -oE '^\s*k8s.io/[a-z0-9-]+ => ./staging' "$gomod" | awk -v v="$staging_version" '{print "replace " $1 " => " $1 " " v}'
    } >> go.mod
    cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
)
GO
    step "go mod tidy (downloads about 700 MB of modules on a cold machine)"
    go mod tidy >&2
  fi
  ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
  for b in kube-apiserver kube-controller-manager; do
    if [ ! -x "$OUT/$b" ]; then
      step "building $b $K8S_VERSION (about 4 minutes cold on 2 cores)"
      go build -trimpath -ldflags="$ldflags" -o "$OUT/.$b.tmp.$$" "k8s.io/kubernetes/cmd/$b"
      mv -f "$OUT/.$b.tmp.$$" "$OUT/$b"
    fi
  done
fi

if [ ! -x "$OUT/etcd" ]; then
  cd "$WORK/etcd"
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
fi

step "control plane binaries ready in $OUT"
echo "$OUT"
