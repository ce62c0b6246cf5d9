/** This package's version, as reported to MCP clients and by `mcp-bastion --version`. */
export const VERSION = '0.1.0'
