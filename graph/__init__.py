"""The threat-intelligence GraphQL API: schema, types, the ASGI app, settings and CLI."""
