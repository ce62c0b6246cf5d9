import { type CommandSpec, type Flag, synopsis } from './usage.js'

const CONFIG: Flag = { name: 'config', value: 'FILE', help: 'the config file (default: $BASTION_CONFIG, else ./bastion.yaml, else the embedded default)' }
const JSON_OUT: Flag = { name: 'json', help: 'print JSON instead of text' }

export const SERVE: CommandSpec = {
  name: 'serve',
  brief: 'serve MCP over HTTP or stdio',
  usage: ['serve [--config FILE] [--host HOST] [--port PORT] [--stdio]'],
  summary: 'Serve MCP over HTTP (or stdio). The first run creates the state folder and prints an admin API key once.',
  flags: [
    CONFIG,
    { name: 'host', value: 'HOST', help: 'address to bind (overrides $BASTION_HOST and server.host)' },
    { name: 'port', value: 'PORT', help: 'port to bind, 0 for any free one (overrides $BASTION_PORT and server.port)' },
    { name: 'stdio', help: 'speak MCP on stdin/stdout; the API key comes from $MCP_API_KEY' },
  ],
  examples: ['mcp-bastion serve --port 8080', 'MCP_API_KEY=bst_… mcp-bastion serve --stdio'],
}

export const DOCTOR: CommandSpec = {
  name: 'doctor',
  brief: 'check that a deployment is safe; writes nothing',
  usage: ['doctor [--config FILE] [--url URL] [--json]'],
  summary:
    'The deployment checklist, run: TLS off loopback, dangerously* options, secrets and their files, state and key file permissions, guessable HS256 secrets, roles holding *, tools without a permission, limits, key age and expiry, the audit trail and its key, Redis and PostgreSQL, issuer clocks, upstream pins; with --url, a running server as an anonymous client sees it (challenge, Host and Origin refusals, metadata, headers, TLS versions). Each finding: pass, warn or fail, why, and the fix. Exit 1 on any fail.',
  flags: [CONFIG, { name: 'url', value: 'URL', help: 'also check the server running at this MCP URL' }, JSON_OUT],
  examples: ['mcp-bastion doctor', 'mcp-bastion doctor --config bastion.yaml --url https://mcp.example.com/mcp'],
}

export const CALL: CommandSpec = {
  name: 'call',
  brief: 'send one MCP request to a server and print the answer',
  usage: [
    'call URL [METHOD] [--tool NAME] [--arg NAME=TEXT | --arg NAME:=JSON …] [--args JSON] [--uri URI] [--prompt NAME]',
    ' [--key KEY | --key-file FILE | --client-credentials ID:SECRET@TOKEN_URL] [--era auto|modern|legacy] [--timeout SECONDS] [--json]',
  ],
  summary:
    "One request with the MCP SDK's client over Streamable HTTP, in the protocol era the server offers (2026-07-28, else 2025-11-25): tools/list (the default), tools/call (with --tool), resources/list, resources/read (--uri), prompts/list, prompts/get (--prompt). The result goes to stdout; a refusal to stderr as the server sent it: its code, text and request id. The API key comes from --key, --key-file or $MCP_API_KEY; --client-credentials obtains a token at TOKEN_URL first (the secret may come from $MCP_CLIENT_SECRET instead: ID@TOKEN_URL). Exit 1 on a refusal or a tool error.",
  flags: [
    { name: 'tool', value: 'NAME', help: 'the tool to call (METHOD defaults to tools/call)' },
    { name: 'arg', value: 'NAME=TEXT', multiple: true, help: 'an argument, a string; NAME:=JSON for a number, boolean, list or object' },
    { name: 'args', value: 'JSON', help: 'the arguments as one JSON object (--arg entries are added to it)' },
    { name: 'uri', value: 'URI', help: 'the resource to read (METHOD defaults to resources/read)' },
    { name: 'prompt', value: 'NAME', help: 'the prompt to get (METHOD defaults to prompts/get)' },
    { name: 'key', value: 'KEY', help: 'the API key (visible to other users in the process list: prefer --key-file or $MCP_API_KEY)' },
    { name: 'key-file', value: 'FILE', help: 'read the API key from this file' },
    { name: 'client-credentials', value: 'ID:SECRET@TOKEN_URL', help: 'obtain an access token by the OAuth client credentials grant first' },
    { name: 'era', value: 'ERA', help: 'auto (default), modern (2026-07-28 only) or legacy (2025-11-25 only)' },
    { name: 'timeout', value: 'SECONDS', help: 'for connecting and for the request (default 30)' },
    JSON_OUT,
  ],
  positionals: { name: 'URL [METHOD]', min: 1, max: 2 },
  examples: [
    'mcp-bastion call http://127.0.0.1:8080/mcp --key-file admin.key',
    'mcp-bastion call http://127.0.0.1:8080/mcp --key $KEY --tool read_file --arg path=notes/todo.txt',
    'mcp-bastion call https://mcp.example.com/mcp --client-credentials ci@https://mcp.example.com/oauth/token --tool query --arg sql="select 1"',
  ],
}

export const KEYS_CREATE: CommandSpec = {
  name: 'keys create',
  brief: 'create an API key (printed once)',
  usage: ['keys create --role ROLE [--role ROLE…] [--name NAME] [--expires 30d|YYYY-MM-DD] [--config FILE]'],
  summary: 'Create an API key. The key is printed once, to stdout, and stored only as a hash.',
  flags: [
    { name: 'role', value: 'ROLE', multiple: true, help: 'a role defined in the config; at least one' },
    { name: 'name', value: 'NAME', help: 'a name for people (default: the roles)' },
    { name: 'expires', value: 'WHEN', help: 'a duration from now (30d, 12h, 2w) or a date (2027-06-30, or an ISO time with offset)' },
    CONFIG,
  ],
  examples: ['mcp-bastion keys create --role reader --name ci --expires 30d'],
}

export const KEYS_LIST: CommandSpec = {
  name: 'keys list',
  brief: 'list API keys and their status',
  usage: ['keys list [--config FILE] [--json]'],
  summary: 'List the stored API keys with their status. Never prints a secret; writes nothing.',
  flags: [CONFIG, JSON_OUT],
  examples: ['mcp-bastion keys list --json'],
}

export const KEYS_REVOKE: CommandSpec = {
  name: 'keys revoke',
  brief: 'revoke an API key',
  usage: ['keys revoke ID [--config FILE]'],
  summary: 'Revoke a stored API key by its id (16 hex characters, see keys list). A running server refuses it within auth.reloadIntervalMs.',
  flags: [CONFIG],
  positionals: { name: 'ID', min: 1, max: 1 },
  examples: ['mcp-bastion keys revoke 3f9a0c1d2e4b5a69'],
}

export const GRANTS_LIST: CommandSpec = {
  name: 'grants list',
  brief: "list users' grants to OAuth clients",
  usage: ['grants list [--config FILE] [--json]'],
  summary: 'List the grants users gave OAuth clients at the sign-in pages: who, which client, which scopes, since when. Writes nothing.',
  flags: [CONFIG, JSON_OUT],
  examples: ['mcp-bastion grants list --json'],
}

export const GRANTS_REVOKE: CommandSpec = {
  name: 'grants revoke',
  brief: "revoke a user's grant to a client",
  usage: ['grants revoke ID [--config FILE]'],
  summary:
    'Revoke a grant by its id (32 hex characters, see grants list): its refresh tokens stop working at once, its access tokens are refused, and the user is asked to consent again.',
  flags: [CONFIG],
  positionals: { name: 'ID', min: 1, max: 1 },
  examples: ['mcp-bastion grants revoke 3f9a0c1d2e4b5a697c8d9e0f1a2b3c4d'],
}

const NAMES = { name: 'NAME', min: 0, max: 64 }

export const UPSTREAMS_LIST: CommandSpec = {
  name: 'upstreams list',
  brief: 'list the upstream MCP servers and their pins',
  usage: ['upstreams list [--config FILE] [--json]'],
  summary: 'List the configured upstream MCP servers: kind, pin mode, how many tools are pinned and when. Connects to nothing; writes nothing.',
  flags: [CONFIG, JSON_OUT],
  examples: ['mcp-bastion upstreams list'],
}

export const UPSTREAMS_PIN: CommandSpec = {
  name: 'upstreams pin',
  brief: "record upstreams' tool definitions in bastion.lock.json",
  usage: ['upstreams pin [NAME…] [--config FILE]'],
  summary:
    'Connect to the named upstreams (default: all), list their tools and record each definition and its digest in bastion.lock.json beside the config, replacing their earlier pins. Review the diff and commit it; a running server applies new pins when it restarts.',
  flags: [CONFIG],
  positionals: NAMES,
  examples: ['mcp-bastion upstreams pin filesystem', 'git diff bastion.lock.json'],
}

export const UPSTREAMS_DIFF: CommandSpec = {
  name: 'upstreams diff',
  brief: "show how upstreams' tools differ from their pins",
  usage: ['upstreams diff [NAME…] [--config FILE] [--json]'],
  summary: 'Connect to the named upstreams (default: all), list their tools and show, field by field, what differs from bastion.lock.json. Exit status 1 when anything differs.',
  flags: [CONFIG, JSON_OUT],
  positionals: NAMES,
  examples: ['mcp-bastion upstreams diff github'],
}

export const UPSTREAMS_STATUS: CommandSpec = {
  name: 'upstreams status',
  brief: 'can each upstream be reached, and does it match its pins',
  usage: ['upstreams status [NAME…] [--config FILE] [--json]'],
  summary:
    'Connect to the named upstreams (default: all) and report each: reachable or not (and why), protocol version, tools listed, tools drifted or unpinned. Exit status 1 when one is down or drifted.',
  flags: [CONFIG, JSON_OUT],
  positionals: NAMES,
  examples: ['mcp-bastion upstreams status --json'],
}

export const KEYS_ROTATE_SIGNING: CommandSpec = {
  name: 'keys rotate-signing',
  brief: 'token service: a new signing key',
  usage: ['keys rotate-signing [--config FILE]'],
  summary: 'Token service: a new signing key signs from now on; older keys verify the tokens they signed until those expire.',
  flags: [CONFIG],
  examples: ['mcp-bastion keys rotate-signing --config bastion.yaml'],
}

export const CONFIG_CHECK: CommandSpec = {
  name: 'config check',
  brief: 'check a config file and its secrets; writes nothing',
  usage: ['config check FILE [--no-env]'],
  summary:
    'Validate a config file and bind it to the built-in tools, resolve every { env } and { file } secret reference (naming each missing one, never a value), and warn about role permissions nothing requires. Writes nothing, connects nowhere.',
  flags: [{ name: 'no-env', help: 'do not resolve secret references (for CI without the secrets)' }],
  positionals: { name: 'FILE', min: 1, max: 1 },
  examples: ['mcp-bastion config check bastion.yaml', 'mcp-bastion config check bastion.yaml --no-env'],
}

export const AUDIT_VERIFY: CommandSpec = {
  name: 'audit verify',
  brief: "verify the audit trail's hash chain and MACs",
  usage: ['audit verify FILE [FILE…] [--key FILE [--key FILE…] | --config FILE]', 'audit verify --postgres [--key FILE [--key FILE…]] [--config FILE]'],
  summary:
    "Verify the hash chains and MACs of audit files (oldest first: rotated files audit.jsonl.<time>.<n>, then audit.jsonl). The keys are --key, else --config's audit.key or <stateDir>/audit.key, else the audit.key beside the first FILE, each with the old keys audit rotate-key kept beside it (audit.key.<kid>.old). Each line is checked under the key its writer names by id: a key id not given is 'wrong key', a MAC that fails under a key given is forged. Reads only; creates no key.",
  flags: [
    { name: 'key', value: 'FILE', multiple: true, help: 'an audit MAC key file (as <stateDir>/audit.key holds it); repeat for old keys' },
    { name: 'config', value: 'FILE', help: 'take the key from this config (audit.key, else <stateDir>/audit.key)' },
    { name: 'postgres', help: "verify the config's audit.postgres table instead of files" },
  ],
  positionals: { name: 'FILE', min: 0, max: Number.POSITIVE_INFINITY },
  examples: ['mcp-bastion audit verify .bastion/audit.jsonl.* .bastion/audit.jsonl', 'mcp-bastion audit verify /var/log/bastion/audit.jsonl --key /etc/bastion/audit.key'],
}

export const AUDIT_ROTATE_KEY: CommandSpec = {
  name: 'audit rotate-key',
  brief: 'a new audit key, handed over in the trail',
  usage: ['audit rotate-key [--config FILE]'],
  summary:
    'Make a new audit key (<stateDir>/audit.key, 0600, written atomically) and keep the old one as audit.key.<kid>.old. The trail gets a hand-over line, audit.key-rotated, MACed by the old key (mac) and the new one (macNext), so audit verify follows the chain across it. If the key the trail is sealed under is missing or was replaced, this starts a new key deliberately: lines before it then verify only with the old key. Stop the server first.',
  flags: [CONFIG],
  examples: ['mcp-bastion audit rotate-key --config bastion.yaml'],
}

export const SECRETS_ROTATE: CommandSpec = {
  name: 'secrets rotate',
  brief: 'a new encryption key; re-encrypt what is stored',
  usage: ['secrets rotate [--config FILE]'],
  summary: 'A new active encryption key (the state folder keyring, or the configured active key); everything stored encrypted is re-encrypted under it.',
  flags: [CONFIG],
  examples: ['mcp-bastion secrets rotate'],
}

export const POLICY_CHECK: CommandSpec = {
  name: 'policy check',
  brief: 'compile a policy file',
  usage: ['policy check FILE [--config FILE]'],
  summary: "Compile a policy file with the config's role rules against the built-in tools and the pinned upstream tools. Writes nothing.",
  flags: [CONFIG],
  positionals: { name: 'FILE', min: 1, max: 1 },
  examples: ['mcp-bastion policy check candidate.yaml'],
}

export const POLICY_EXPLAIN: CommandSpec = {
  name: 'policy explain',
  brief: 'decide one request and show every rule evaluated',
  usage: [
    'policy explain --role ROLE [--principal ID] [--name NAME] [--tenant T] [--scope S] [--claim NAME=JSON]',
    '               (--tool NAME [--args JSON] | --prompt NAME [--args JSON] | --resource NAME --uri URI [--action read|list])',
    '               [--policy FILE] [--config FILE] [--json]',
  ],
  summary: 'Decide one request offline and show every rule evaluated, denies first, and why each did or did not apply. Writes nothing.',
  flags: [
    { name: 'role', value: 'ROLE', multiple: true, help: "the principal's roles" },
    { name: 'principal', value: 'ID', help: 'the principal id (default: explain)' },
    { name: 'name', value: 'NAME', help: 'the principal name (default: explain)' },
    { name: 'tenant', value: 'T', help: "the principal's tenant" },
    { name: 'scope', value: 'S', multiple: true, help: "the principal's token scopes" },
    { name: 'claim', value: 'NAME=JSON', multiple: true, help: 'a token claim, its value as JSON or a plain string' },
    { name: 'tool', value: 'NAME', help: 'decide a tools/call of this tool' },
    { name: 'prompt', value: 'NAME', help: 'decide a prompts/get of this prompt' },
    { name: 'resource', value: 'NAME', help: 'decide a read or list of this resource (with --uri)' },
    { name: 'uri', value: 'URI', help: 'the resource URI' },
    { name: 'action', value: 'read|list', help: 'the resource action (default: read)' },
    { name: 'args', value: 'JSON', help: 'the call arguments, validated by the tool schema as the server does' },
    { name: 'policy', value: 'FILE', help: 'a candidate policy file instead of the configured policy' },
    CONFIG,
    JSON_OUT,
  ],
  examples: ['mcp-bastion policy explain --role analyst --tool read_file --args \'{"path":"notes/todo.txt"}\''],
}

export const POLICY_REPLAY: CommandSpec = {
  name: 'policy replay',
  brief: 'decide recorded decisions again under a candidate policy',
  usage: ['policy replay --audit FILE [--audit FILE…] --policy NEW.yaml [--config FILE] [--json] [--fail-on-change]'],
  summary:
    'Decide every recorded decision of an audit trail again under a candidate policy and list those that would change, and those the line cannot decide again because it lacks what the policy reads. Writes nothing.',
  flags: [
    { name: 'audit', value: 'FILE', multiple: true, help: 'an audit file (at least one)' },
    { name: 'policy', value: 'FILE', help: 'the candidate policy file (required)' },
    CONFIG,
    JSON_OUT,
    { name: 'fail-on-change', help: 'exit 1 if a decision would change or cannot be decided again' },
  ],
  examples: ['mcp-bastion policy replay --audit .bastion/audit.jsonl --policy candidate.yaml --fail-on-change'],
}

/** A command with subcommands: `keys`, `config`, `audit`, `secrets`, `policy`. */
export interface CommandGroup {
  readonly name: string
  readonly summary: string
  readonly subcommands: ReadonlyMap<string, CommandSpec>
}

const group = (name: string, summary: string, specs: readonly CommandSpec[]): CommandGroup => ({
  name,
  summary,
  subcommands: new Map(specs.map((s) => [s.name.slice(name.length + 1), s])),
})

export const GROUPS: ReadonlyMap<string, CommandGroup> = new Map(
  [
    group('keys', 'API keys', [KEYS_CREATE, KEYS_LIST, KEYS_REVOKE, KEYS_ROTATE_SIGNING]),
    group('grants', 'OAuth grants users gave clients', [GRANTS_LIST, GRANTS_REVOKE]),
    group('upstreams', 'the MCP servers bastion fronts (gateway)', [UPSTREAMS_LIST, UPSTREAMS_PIN, UPSTREAMS_DIFF, UPSTREAMS_STATUS]),
    group('config', 'the config file', [CONFIG_CHECK]),
    group('audit', 'the audit trail', [AUDIT_VERIFY, AUDIT_ROTATE_KEY]),
    group('secrets', 'encryption keys', [SECRETS_ROTATE]),
    group('policy', 'policies, offline', [POLICY_CHECK, POLICY_EXPLAIN, POLICY_REPLAY]),
  ].map((g) => [g.name, g]),
)

export const ALL_COMMANDS: readonly CommandSpec[] = [SERVE, DOCTOR, CALL, ...[...GROUPS.values()].flatMap((g) => [...g.subcommands.values()])]

/** `mcp-bastion keys --help`: each subcommand's synopsis. */
export function groupHelp(g: CommandGroup): string {
  return `mcp-bastion ${g.name}: ${g.summary}\n\nUsage:\n${[...g.subcommands.values()].map((s) => `  ${synopsis(s, '  ')}\n`).join('')}\nRun 'mcp-bastion ${g.name} <subcommand> --help' for a subcommand's options.\n`
}
