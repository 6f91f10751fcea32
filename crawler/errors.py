"""The crawler's errors, drawn once.

    CrawlerError                 anything the crawler refuses or cannot do; exit code below
      ├── FeedError              the file or URL cannot be read, or is not the format (2)
      └── DeliveryError          the server could not be reached or refused us (3)
            ├── Unreachable      connection errors or 5xx until the retries ran out
            └── Refused          a 4xx or a GraphQL error that retrying will not change
                  └── AuthRefused    401/403, UNAUTHENTICATED, FORBIDDEN: stop at once

A batch the server refuses for its content (BAD_USER_INPUT) is not an error of the run: its
records are reported as rejected and the next batch is sent.
"""

from __future__ import annotations

from typing import Any


class CrawlerError(Exception):
    """Root of the crawler's errors; `exit_code` is what `vajra crawl` exits with."""

    exit_code = 3

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class FeedError(CrawlerError):
    """The feed cannot be read or is not the format it was said to be."""

    exit_code = 2


class DeliveryError(CrawlerError):
    """The server did not take a batch."""


class Unreachable(DeliveryError):
    """Connection errors or 5xx answers until the retries ran out."""


class Refused(DeliveryError):
    """The server refused the request; sending it again would not help."""

    def __init__(
        self, message: str, problems: list[dict[str, Any]] | None = None, status: int = 0
    ) -> None:
        super().__init__(message)
        self.problems = problems or []
        self.status = status  # the HTTP status, when there was one


class AuthRefused(Refused):
    """No token, a wrong token, or a token without the crawler role."""
