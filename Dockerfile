# One image with both programs: `gitops-server` and `gitops-agent` are on PATH, so the first
# argument picks the program:
#   docker run IMAGE gitops-server serve --tls-self-signed ...
#   docker run IMAGE gitops-agent run --server-url wss://... ...
# Build: docker build -t gitops:dev .   (on a machine without Docker: scripts/podman-image.sh)

# ---- build: compile TypeScript with the dev dependencies, then drop them -------------------------
FROM node:24-bookworm-slim AS build
WORKDIR /app
# Dependencies first, so editing the sources does not invalidate the `npm ci` layer.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts/build.mjs ./scripts/build.mjs
COPY bin ./bin
COPY src ./src
# Source maps are for debugging the sources, which the image does not hold: dropped (Node reads
# them only with --enable-source-maps, and a missing one then changes nothing).
RUN npm run build \
 && find dist -type f -name '*.map' -delete \
 && npm prune --omit=dev --no-audit --no-fund \
 && chmod 0755 dist/bin/gitops-server.js dist/bin/gitops-agent.js
# Type declarations and source maps are half of the production node_modules (mostly the generated
# Kubernetes client) and nothing loads them at run time.
RUN find node_modules -type f \( -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' -o -name '*.map' \) -delete \
 && rm -rf node_modules/@types

# ---- runtime: Node, the compiled code and the production dependencies only ------------------------
FROM node:24-bookworm-slim
# `gitops-server serve --tls-self-signed` makes its certificate with the openssl CLI, which the
# slim base lacks (about 2 MB).
RUN apt-get update \
 && apt-get install -y --no-install-recommends openssl \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log
# The state folders default to these inside the image (volumes go there), so that, for example,
# `docker exec CONTAINER gitops-server agent create ...` finds the running server's registry.
ENV NODE_ENV=production \
    GITOPS_SERVER_STATE_DIR=/var/lib/gitops-server \
    GITOPS_AGENT_STATE_DIR=/var/lib/gitops-agent
WORKDIR /app
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# The CLIs start with `#!/usr/bin/env node`; linking them into PATH makes the program name the
# command. The state folders are made here, owned by the runtime user, so that a plain `docker run`
# without volumes works too and a named volume mounted there inherits that owner.
RUN ln -s /app/dist/bin/gitops-server.js /usr/local/bin/gitops-server \
 && ln -s /app/dist/bin/gitops-agent.js /usr/local/bin/gitops-agent \
 && mkdir -p /var/lib/gitops-server /var/lib/gitops-agent \
 && chown 1000:1000 /var/lib/gitops-server /var/lib/gitops-agent
# uid/gid 1000 is the image's `node` user. Numeric, because Kubernetes can only verify
# `runAsNonRoot` against a numeric USER.
USER 1000:1000
# No wrapper entrypoint (the base image's docker-entrypoint.sh would prepend `node` to unknown
# arguments): the command runs as given, as PID 1, and both programs handle SIGTERM themselves.
ENTRYPOINT []
CMD ["gitops-server", "--help"]
