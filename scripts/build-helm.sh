#!/usr/bin/env bash
# Builds `helm` (v3), and with the argument `kustomize` the standalone `kustomize`, from Go modules
# with the machine's Go toolchain, into a cache outside the repository keyed by version. They
# render charts/gitops-agent and manifests/agent for the chart test (e2e/chart) and for anyone who
# wants to try the chart without installing Helm. Prints the binary's path on stdout when done;
# progress goes to stderr.
#
#   scripts/build-helm.sh              # helm
#   scripts/build-helm.sh kustomize    # kustomize
#
# Honours GITOPS_HELM and GITOPS_KUSTOMIZE: when the one for the tool asked names an executable
# (your own binary), nothing is built and that path is printed. A killed build never leaves a
# half-written binary: it is linked to a temporary name and renamed into place only when complete.
#
# Each tool is built from its own released module (its go.mod and go.sum, so exactly the dependency
# versions that release pinned), with the version ldflags of its own release build, so
# `helm version` and the Kubernetes version `helm template` and `helm lint` assume are the release's.
set -euo pipefail

HELM_VERSION="${GITOPS_HELM_VERSION:-v3.22.0}"
KUSTOMIZE_VERSION="${GITOPS_KUSTOMIZE_VERSION:-v5.8.2}"
CACHE_ROOT="${GITOPS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/gitops}"
TOOL="${1:-helm}"

start=$(date +%s)
step() { echo "[$TOOL +$(( $(date +%s) - start ))s] $*" >&2; }

case "$TOOL" in
  helm) own="${GITOPS_HELM:-}"; own_var=GITOPS_HELM; version=$HELM_VERSION; module=helm.sh/helm/v3; pkg=./cmd/helm ;;
  kustomize) own="${GITOPS_KUSTOMIZE:-}"; own_var=GITOPS_KUSTOMIZE; version=$KUSTOMIZE_VERSION; module=sigs.k8s.io/kustomize/kustomize/v5; pkg=. ;;
  *) echo "build-helm: unknown tool '$TOOL' (helm or kustomize)" >&2; exit 2 ;;
esac
OUT="$CACHE_ROOT/$TOOL/$version"

if [ -n "$own" ]; then
  [ -x "$own" ] || { echo "build-helm: $own_var=$own is not an executable file" >&2; exit 1; }
  step "using $own_var=$own"
  echo "$own"
  exit 0
fi
if [ -x "$OUT/$TOOL" ]; then
  echo "$OUT/$TOOL"
  exit 0
fi

command -v go >/dev/null || { echo "build-helm: Go is required (https://go.dev/dl); or set $own_var to your own $TOOL binary" >&2; exit 1; }
export CGO_ENABLED=0

mkdir -p "$OUT"
cd "$OUT"   # no go.mod here, so the download touches no module's requirements
step "downloading $module@$version"
src=$(go mod download -json "$module@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
[ -n "$src" ] && [ -f "$src/go.mod" ] || { echo "build-helm: could not download $module@$version (see the go error above)" >&2; exit 1; }
cd "$src"

ldflags="-s -w"
if [ "$TOOL" = helm ]; then
  # As helm's Makefile: the default Kubernetes version follows the client-go it is built with
  # (v0.N.x is Kubernetes 1.N).
  client_go=$(go list -mod=readonly -m -f '{{.Version}}' k8s.io/client-go)
  k8s_minor=${client_go#v0.}; k8s_minor=${k8s_minor%%.*}
  ldflags="$ldflags -X helm.sh/helm/v3/internal/version.version=$version -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  for p in pkg/lint/rules pkg/chartutil; do
    ldflags="$ldflags -X helm.sh/helm/v3/$p.k8sVersionMajor=1 -X helm.sh/helm/v3/$p.k8sVersionMinor=$k8s_minor"
  done
else
  ldflags="$ldflags -X sigs.k8s.io/kustomize/api/provenance.version=$version"
fi

[ "$TOOL" = helm ] && cold="2.5 to 3.5 minutes and 100 MB of modules" || cold="about 20 s"
step "building $TOOL $version ($cold cold on 2 cores)"
go build -mod=readonly -trimpath -ldflags="$ldflags" -o "$OUT/.$TOOL.tmp.$$" "$pkg"
mv -f "$OUT/.$TOOL.tmp.$$" "$OUT/$TOOL"

step "$TOOL ready in $OUT"
echo "$OUT/$TOOL"
