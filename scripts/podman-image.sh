#!/usr/bin/env bash
# Builds the project's container image with podman on a machine that has no Docker engine and no
# reachable container registry (Debian's podman with runc; what was verified with it is in
# docs/operations.md, "Container image").
#
# The Dockerfile stays exactly as users need it (`FROM node:24-bookworm-slim`). Because that base
# cannot be pulled here, this script first makes a local stand-in under the same name: a Debian
# bookworm minbase root file system (debootstrap) with a Node 24 binary from the npm `node@24`
# package, this machine's npm and CA bundle, and a `node` user with uid 1000 like the official image.
# The stand-in is cached: it is made only when `podman image exists` says it is missing.
# Making it needs, on this one machine: root (debootstrap, chroot, /etc/containers), a Debian mirror
# (DEBIAN_MIRROR) and npm with its registry (node@24; the build's `npm ci` needs the registry too).
# The build leaves its build stage (about 579 MB, dev dependencies) as an untagged image:
# `podman image prune -f` removes it, at the cost of `npm ci` again on the next build.
#
# Usage: scripts/podman-image.sh [TAG]            (TAG defaults to gitops:dev)
#        scripts/podman-image.sh --rootfs         only make the stand-in base's root file system (no
#                                                 podman needed) and print its folder: what
#                                                 e2e/harness/product-image.ts assembles its image on
# Env:   GITOPS_IMAGE_REV     build this Git revision (via `git archive`) instead of the work tree,
#                            e.g. HEAD: reproducible, and immune to files being edited meanwhile
#        GITOPS_IMAGE_CACHE  cache folder (default ~/.cache/gitops/node-base)
#        DEBIAN_MIRROR       debootstrap mirror (default: the first Debian URI in /etc/apt)
#        PODMAN_RUNTIME      OCI runtime (default runc: crun refuses this machine's hybrid cgroups)
# Prints the image tag on stdout when done; progress goes to stderr.
set -euo pipefail

ROOTFS_ONLY=0
if [ "${1:-}" = "--rootfs" ]; then ROOTFS_ONLY=1; shift; fi
TAG="${1:-gitops:dev}"
BASE="docker.io/library/node:24-bookworm-slim"
CACHE="${GITOPS_IMAGE_CACHE:-$HOME/.cache/gitops/node-base}"
RUNTIME="${PODMAN_RUNTIME:-runc}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

log() { echo "podman-image: $*" >&2; }

tools="podman debootstrap"
[ "$ROOTFS_ONLY" = 1 ] && tools=debootstrap
for tool in $tools; do
  if ! command -v "$tool" >/dev/null; then
    log "$tool is missing: apt-get update && apt-get install -y podman buildah runc debootstrap"
    exit 1
  fi
done

# crun and runc both fail to raise RLIMIT_NOFILE in this machine's sandbox unless podman is told
# not to set default ulimits; write that once if no containers.conf exists yet.
if [ ! -e /etc/containers/containers.conf ] && [ "$(id -u)" = 0 ]; then
  log "writing /etc/containers/containers.conf (default_ulimits = [])"
  printf '[containers]\ndefault_ulimits = []\n' > /etc/containers/containers.conf
fi

# The stand-in's root file system under $CACHE/rootfs-bookworm, complete or not at all.
make_rootfs() {
  if [ "$(id -u)" != 0 ]; then
    log "making the stand-in base $BASE needs root (debootstrap, chroot): run this script as root once"
    exit 1
  fi
  if ! command -v npm >/dev/null; then
    log "npm is missing: the stand-in base takes Node 24 from the npm package node@24 and this machine's npm"
    exit 1
  fi
  mkdir -p "$CACHE"
  local mirror="${DEBIAN_MIRROR:-}"
  if [ -z "$mirror" ]; then
    mirror="$(grep -h -E '^URIs: .*/debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 | awk '{print $2}')"
    mirror="${mirror:-http://deb.debian.org/debian}"
  fi

  # Node 24 from the npm registry (the `node` package ships the real binary for this platform).
  if [ ! -x "$CACHE/node24/node_modules/node/bin/node" ]; then
    log "installing node@24 from the npm registry into $CACHE/node24"
    mkdir -p "$CACHE/node24"
    (cd "$CACHE/node24" && npm init -y >/dev/null && npm install --no-audit --no-fund node@24 >&2)
  fi
  local node_bin
  node_bin="$(readlink -f "$CACHE/node24/node_modules/node/bin/node")"

  # Built in a temporary folder and renamed when complete, so a killed run leaves no half root fs.
  local rootfs="$CACHE/rootfs-bookworm"
  if [ ! -d "$rootfs" ]; then
    log "debootstrap bookworm from $mirror (about a minute)"
    rm -rf "$rootfs.tmp"
    debootstrap --variant=minbase bookworm "$rootfs.tmp" "$mirror" >&2
    mv "$rootfs.tmp" "$rootfs"
  fi

  log "adding node $("$node_bin" --version), npm, the CA bundle and the node user"
  install -m 0755 "$node_bin" "$rootfs/usr/local/bin/node"
  rm -rf "$rootfs/usr/local/lib/node_modules/npm"
  mkdir -p "$rootfs/usr/local/lib/node_modules"
  cp -a /usr/lib/node_modules/npm "$rootfs/usr/local/lib/node_modules/npm"
  ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/local/bin/npm"
  ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$rootfs/usr/local/bin/npx"
  mkdir -p "$rootfs/etc/ssl/certs"
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
  if ! chroot "$rootfs" id -u node >/dev/null 2>&1; then
    chroot "$rootfs" groupadd --gid 1000 node
    chroot "$rootfs" useradd --uid 1000 --gid node --shell /bin/bash --create-home node
  fi
  # What the official slim image drops too: apt lists and docs are dead weight in a base image.
  rm -rf "$rootfs/var/lib/apt/lists/"* "$rootfs/var/cache/apt/"*.bin "$rootfs/usr/share/doc" "$rootfs/usr/share/man"
}

make_base() {
  make_rootfs
  local rootfs="$CACHE/rootfs-bookworm"
  log "importing the stand-in as $BASE"
  tar -C "$rootfs" -c . | podman import \
    --change 'CMD ["node"]' \
    --change 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' \
    - "$BASE" >&2
}

if [ "$ROOTFS_ONLY" = 1 ]; then
  if [ -x "$CACHE/rootfs-bookworm/usr/local/bin/node" ]; then
    log "root file system $CACHE/rootfs-bookworm exists: not rebuilt"
  else
    make_rootfs
  fi
  echo "$CACHE/rootfs-bookworm"
  exit 0
fi

if podman image exists "$BASE"; then
  log "base $BASE exists: not rebuilt (podman rmi it to rebuild)"
else
  base_start=$(date +%s)
  make_base
  log "made the stand-in base in $(( $(date +%s) - base_start )) s"
fi

CONTEXT="$ROOT"
if [ -n "${GITOPS_IMAGE_REV:-}" ]; then
  CONTEXT="$(mktemp -d)"
  trap 'rm -rf "$CONTEXT"' EXIT
  git -C "$ROOT" archive "$GITOPS_IMAGE_REV" | tar -x -C "$CONTEXT"
  log "context: $GITOPS_IMAGE_REV ($(git -C "$ROOT" rev-parse --short "$GITOPS_IMAGE_REV"))"
fi

log "building $TAG from $CONTEXT/Dockerfile"
start=$(date +%s)
podman build --runtime "$RUNTIME" --network host -t "$TAG" "$CONTEXT" >&2
log "built $TAG in $(( $(date +%s) - start )) s; size: $(podman image inspect --format '{{.Size}}' "$TAG") bytes"
echo "$TAG"
