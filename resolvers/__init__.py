"""Query and mutation resolvers for threats, and the data access they use.

Resolvers are plain async functions over a `Database`; they know nothing of GraphQL
or of caching and return the plain records in `resolvers.records`.
"""
