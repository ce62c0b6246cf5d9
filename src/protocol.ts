/**
 * The MCP protocol shapes bastion's public tool API is written in: results, descriptors and the
 * SDK's handler context, as types only. The one file outside src/transport/ that names the SDK
 * (test/architecture.test.ts allows it, and only for `import type`): no SDK behaviour reaches a
 * concern folder, and an SDK upgrade that changes these shapes shows up here.
 */
import type { inputRequired, inputResponse } from '@modelcontextprotocol/server'

export type {
  CallToolResult,
  GetPromptResult,
  InputRequiredResult,
  ReadResourceResult,
  ServerCapabilities,
  ServerContext,
  ServerOptions,
  Tool,
  ToolAnnotations,
} from '@modelcontextprotocol/server'

/**
 * The SDK's multi-round-trip helpers (MCP 2026-07-28 `input_required`), handed to tools in their
 * context by the transport, so that a tool asks for input without importing the SDK.
 */
export interface InputHelpers {
  /** Build an `input_required` result (`required.elicit(…)` builds one elicitation request). */
  readonly required: typeof inputRequired
  /** Read the client's answer to one input request of an earlier round. */
  readonly response: typeof inputResponse
}
