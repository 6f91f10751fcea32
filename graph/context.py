"""What every resolver may use during one operation: the database, the clock and the caller."""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from strawberry.dataloader import DataLoader

from cache import Cache
from graph.errors import ApiError, Forbidden, Unauthenticated
from resolvers import records
from resolvers.store import Database
from resolvers.threats import threats_by_ids


class Role(Enum):
    CRAWLER = "crawler"
    ADMIN = "admin"


# Which role each mutation needs: its resolver requires it, and graph/limits.py checks it
# before the variables are coerced (a mutation's batch is never read for an anonymous caller).
MUTATION_ROLES = {"ingestThreats": Role.CRAWLER, "clearCache": Role.ADMIN}

_TOKEN_VARIABLE = {Role.CRAWLER: "VAJRA_CRAWLER_TOKEN", Role.ADMIN: "VAJRA_ADMIN_TOKEN"}


@dataclass(frozen=True)
class Tokens:
    crawler: str | None = None
    admin: str | None = None

    def require(self, role: Role, authorization: str | None) -> None:
        """Raise unless `authorization` carries a token that grants `role`."""
        accepted = [self.admin] if role is Role.ADMIN else [self.crawler, self.admin]
        configured = [t for t in accepted if t]
        if not configured:
            raise Forbidden(
                f"this mutation is disabled: set {_TOKEN_VARIABLE[role]} on the server to enable it"
            )
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("send 'Authorization: Bearer <token>' to use this mutation")
        # Compared as bytes, in constant time: any text a client sends is just a wrong token.
        token_bytes = token.strip().encode("utf-8", "surrogateescape")
        if any(hmac.compare_digest(token_bytes, t.encode()) for t in configured):
            return
        known = [t for t in (self.crawler, self.admin) if t]
        if any(hmac.compare_digest(token_bytes, t.encode()) for t in known):
            raise Forbidden(f"this token does not have the {role.value} role")
        raise Unauthenticated("the bearer token is not valid")

    def grants(self, role: Role, authorization: str | None) -> bool:
        """Whether `authorization` carries a token that grants `role`."""
        try:
            self.require(role, authorization)
        except ApiError:
            return False
        return True


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Context:
    db: Database
    tokens: Tokens = field(default_factory=Tokens)
    authorization: str | None = None
    clock: Callable[[], dt.datetime] = _utcnow
    cache: Cache | None = None
    cache_debug: bool = False
    cache_operation: Any = None  # filled for the whole-operation cache, when it asks
    introspection: bool = True  # off in production
    # The operation's name once its document validated ("" for an anonymous one): metrics
    # and the access log label requests with it, never with a name that did not validate.
    operation_name: str | None = None
    threat_loader: DataLoader[int, records.Threat | None] = field(init=False)

    def __post_init__(self) -> None:
        async def load(ids: list[int]) -> list[records.Threat | None]:
            found = await threats_by_ids(self.db, ids)
            return [found.get(i) for i in ids]

        self.threat_loader = DataLoader(load_fn=load)

    def require(self, role: Role) -> None:
        self.tokens.require(role, self.authorization)
