#!/usr/bin/env bash
# The local trial of the container image, exactly as README.md ("Container image") and
# docs/operations.md ("Local trials with docker run") show it: the lines between a `# docs: NAME`
# line and the `# end docs` line below are the documented commands, character for character, and
# e2e/image/trial.test.ts checks that the documents' blocks equal them and runs this script against
# the test control plane, so the documents cannot drift from what works.
#
# Usage (in a folder holding repos/<project>.git, e.g. repos/kubernetes-agent.git with
# .gitlab/agents/agent1/config.yaml and repos/gitops-project.git; the image built as gitops:dev):
#   scripts/image-trial.sh up      server container, agent record, agent container, both ready
#   scripts/image-trial.sh down    removes both containers, the server's volume and agent1/
# The documented `docker` lines run with Docker when its daemon answers (`docker info`), else with
# podman (`podman --runtime runc`; PODMAN_RUNTIME overrides runc, see scripts/podman-image.sh for
# why) through a `docker` shim put first on PATH. GITOPS_TRIAL_ENGINE=docker|podman forces one.
# Env: KUBECONFIG (one file) or ~/.kube/config: the cluster the agent applies to, reached from the
#      host network (`--network host`), so a kubeconfig naming 127.0.0.1 works.
set -euo pipefail

engine="${GITOPS_TRIAL_ENGINE:-}"
if [ -z "$engine" ]; then
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then engine=docker
  elif command -v podman >/dev/null 2>&1; then engine=podman
  else
    echo "image-trial: no Docker daemon answers and podman is missing (apt-get install -y podman buildah runc debootstrap)" >&2
    exit 1
  fi
fi
case "$engine" in
  docker) ;;
  podman)
    shim="$(mktemp -d)"
    trap 'rm -rf "$shim"' EXIT
    # shellcheck disable=SC2016 # expanded by the shim, at each call
    printf '#!/bin/sh\nexec podman --runtime "${PODMAN_RUNTIME:-runc}" "$@"\n' > "$shim/docker"
    chmod 0755 "$shim/docker"
    PATH="$shim:$PATH"
    ;;
  *) echo "image-trial: GITOPS_TRIAL_ENGINE=$engine is not docker or podman" >&2; exit 2 ;;
esac

up() {
# docs: up
docker run -d --name gitops-server -p 8443:8443 \
  -v "$PWD/repos:/repos:ro" -v gitops-server-state:/var/lib/gitops-server \
  gitops:dev gitops-server serve --git-root /repos --tls-self-signed --poll-interval 5s
mkdir -m 0700 agent1   # the agent's token, CA and kubeconfig, in a folder only you can enter
timeout 60 sh -c 'until docker exec gitops-server test -s /var/lib/gitops-server/ca.crt; do sleep 1; done'
docker exec gitops-server cat /var/lib/gitops-server/ca.crt > agent1/ca.crt
timeout 60 sh -c 'until curl -sf --cacert agent1/ca.crt https://localhost:8443/readyz; do sleep 1; done'
docker exec gitops-server gitops-server agent create agent1 --config-project kubernetes-agent \
  > agent1/token
cp "${KUBECONFIG:-$HOME/.kube/config}" agent1/kubeconfig
chmod 0644 agent1/token agent1/ca.crt agent1/kubeconfig   # readable by the container's uid 1000
docker run -d --name gitops-agent --network host -v "$PWD/agent1/kubeconfig:/kube/config:ro" \
  -v "$PWD/agent1/token:/etc/gitops-agent/token:ro" \
  -v "$PWD/agent1/ca.crt:/etc/gitops-agent/ca.crt:ro" \
  gitops:dev gitops-agent run --kubeconfig /kube/config --no-leader-elect \
  --server-url wss://localhost:8443/api/v1/agent/connect --listen 127.0.0.1:8080 \
  --token-file /etc/gitops-agent/token --ca-file /etc/gitops-agent/ca.crt
timeout 60 sh -c 'until curl -sf http://127.0.0.1:8080/readyz; do sleep 1; done'
docker exec gitops-server gitops-server agent list
# end docs
}

down() {
# docs: down
docker rm -f gitops-agent gitops-server
docker volume rm gitops-server-state
rm -rf agent1
# end docs
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down   (in the folder holding repos/)" >&2; exit 2 ;;
esac
