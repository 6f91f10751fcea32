"""A GraphQL caching layer for Strawberry and Redis (arrives with the per-resolver cache issue)."""
