"""The MCP face: the stdio transport (`stdio`, `front`, `wire`: none import the SDK)
and the SDK app with its tools (`app`, `tools_*`, `toolkit`)."""
