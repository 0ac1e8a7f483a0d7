# The fastify-sticky command as an image: docker build -t fastify-sticky . (from the repository root)
#
#   docker run --rm -p 8080:8080 -e STICKY_SECRET -e REDIS_URL -e ADMIN_TOKEN \
#     -v "$PWD/gateway.yaml:/etc/fastify-sticky/gateway.yaml:ro" fastify-sticky
#
# The config file is not in the image: mount it at /etc/fastify-sticky/gateway.yaml (a ConfigMap on Kubernetes,
# examples/kubernetes/), with `listen.host: 0.0.0.0` and `listen.port: 8080`. docs/gateway.md has the details.

# 1. Build: the same two commands as CI (npm ci, npm run build).
FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY scripts ./scripts
RUN npm ci --no-audit --no-fund
COPY lib ./lib
RUN npm run build

# 2. Production dependencies, at the versions of package-lock.json. Fastify is an optional peer dependency of the
# package (Express users do without it) and a devDependency of this repository, but the command runs on it: it is
# made a dependency here, at the version the lock file pins, so `--omit=dev` keeps it (and only it).
FROM node:20-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN version="$(node -p "require('./package-lock.json').packages['node_modules/fastify'].version")" \
 && npm pkg delete devDependencies.fastify \
 && npm pkg set "dependencies.fastify=${version}" \
 && npm install --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force

# 3. Runtime: node, the production node_modules and dist/; files owned by root, run as the unprivileged `node` user.
FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=deps /app/package.json ./package.json
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /src/dist ./dist
USER node
EXPOSE 8080
# SIGTERM: /readyz answers 503, in-flight requests are answered, WebSocket tunnels get shutdown.tunnelGrace, and
# the process exits by shutdown.grace. SIGHUP reloads the config file.
STOPSIGNAL SIGTERM
# No HEALTHCHECK: the port and paths are the config file's (and Kubernetes uses its own probes). With the example
# config, docker run --health-cmd 'node -e "fetch(\"http://127.0.0.1:8080/livez\").then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"'
ENTRYPOINT ["node", "dist/gateway/cli.js"]
CMD ["--config", "/etc/fastify-sticky/gateway.yaml"]
