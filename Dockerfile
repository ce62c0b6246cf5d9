# mcp-bastion: build in one stage, run in another that holds no compiler, no npm cache and no
# dev dependencies. Runs as the unprivileged `node` user on a read-only root filesystem (compose.yaml
# sets read_only and a tmpfs for /tmp); state goes to the /data volume.
FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts
COPY tsconfig.json ./
COPY src ./src
RUN npx tsc -b tsconfig.json && npm prune --omit=dev --ignore-scripts

FROM node:20-bookworm-slim AS run
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build --chown=root:root /src/node_modules ./node_modules
COPY --from=build --chown=root:root /src/dist ./dist
COPY --chown=root:root package.json ./
COPY --chown=root:root scripts/cluster-proxy.mjs ./scripts/cluster-proxy.mjs
RUN mkdir -p /data && chown node:node /data && chmod 700 /data
USER node
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD ["node", "-e", "fetch('http://127.0.0.1:8080/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["node", "dist/cli/main.js"]
CMD ["serve", "--config", "/etc/mcp-bastion/bastion.yaml"]
