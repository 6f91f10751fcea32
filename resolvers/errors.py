"""Errors the resolvers raise; the API turns them into GraphQL errors by their `code`.

ResolverError
  └── InvalidInput      BAD_USER_INPUT: arguments or an ingest batch out of bounds
"""

from __future__ import annotations

from typing import Any


class ResolverError(Exception):
    """Root of every error raised on purpose by `resolvers`."""

    code = "INTERNAL_SERVER_ERROR"

    def __init__(self, message: str, **extensions: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extensions = {"code": self.code, **extensions}


class InvalidInput(ResolverError):
    """The caller asked for something the contract does not allow."""

    code = "BAD_USER_INPUT"
