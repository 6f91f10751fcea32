"""Limits on what one GraphQL document may ask, enforced before any resolver runs.

    limit        setting                       checked                           code
    size         GRAPHQL_MAX_DOCUMENT_BYTES    before parsing                    QUERY_TOO_LARGE
    tokens       GRAPHQL_MAX_TOKENS            while parsing                     QUERY_TOO_COMPLEX
    depth        GRAPHQL_MAX_DEPTH             after parsing                     QUERY_TOO_COMPLEX
    aliases      GRAPHQL_MAX_ALIASES           after parsing                     QUERY_TOO_COMPLEX
    directives   GRAPHQL_MAX_DIRECTIVES        after parsing                     QUERY_TOO_COMPLEX
    cost         GRAPHQL_MAX_COST              after parsing, with the variables QUERY_TOO_COMPLEX

All of them before graphql-core's validation, some of whose rules are quadratic in the
document. A refusal is a GraphQL error whose extensions name the limit and its maximum.
How depth, aliases, directives and cost are counted: `graph.cost`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from graphql import ASTValidationRule, DocumentNode, GraphQLError, GraphQLSyntaxError, parse
from graphql.utilities import get_operation_ast
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document
from strawberry.types import ExecutionContext

from graph.context import Context
from graph.cost import cost, shape

QUERY_TOO_LARGE = "QUERY_TOO_LARGE"
QUERY_TOO_COMPLEX = "QUERY_TOO_COMPLEX"


@dataclass(frozen=True)
class Limits:
    """What one document may ask. Each default leaves room for the dashboard's operation
    (357 bytes, 65 tokens, 3 fields deep, no alias or directive, cost 642), GraphiQL's
    introspection (1.6 KB, 183 tokens) and the crawler's batch (cost 103: its threats
    travel in variables)."""

    max_depth: int = 6
    max_aliases: int = 15
    max_tokens: int = 1_000
    max_directives: int = 50
    max_cost: int = 5_000
    max_document_bytes: int = 32 * 1024  # lexing this much takes at most a few ms


class QueryTooLarge(GraphQLError):
    """A document refused unread."""

    def __init__(self, maximum: int) -> None:
        super().__init__(
            f"The document is larger than {maximum} bytes.",
            extensions={"code": QUERY_TOO_LARGE, "limit": "size", "maximum": maximum},
        )


def check_size(query: str, maximum: int) -> None:
    """Raise QueryTooLarge for more than `maximum` UTF-8 bytes, without encoding a document
    that is plainly too long."""
    if len(query) > maximum or len(query.encode("utf-8", "surrogatepass")) > maximum:
        raise QueryTooLarge(maximum)


def _too_complex(
    limit: str,
    message: str,
    maximum: int,
    found: int | None = None,
    at: GraphQLSyntaxError | None = None,
) -> GraphQLError:
    extensions: dict[str, Any] = {"code": QUERY_TOO_COMPLEX, "limit": limit, "maximum": maximum}
    if found is not None:
        extensions["found"] = found
    if at is None:
        return GraphQLError(message, extensions=extensions)
    return GraphQLError(message, source=at.source, positions=at.positions, extensions=extensions)


def _parse(query: str, limits: Limits) -> DocumentNode:
    try:
        # graphql-core counts comments apart from tokens; both are held to the same limit.
        return parse(query, max_lexical_tokens=limits.max_tokens, max_comments=limits.max_tokens)
    except GraphQLSyntaxError as error:
        if "Document contains more than" in error.message:
            message = f"The document has more than {limits.max_tokens} tokens or comments."
            raise _too_complex("tokens", message, limits.max_tokens, at=error) from None
        if "nested too deeply" in error.message:
            message = "The document nests too deeply to be parsed."
            raise _too_complex("depth", message, limits.max_depth, at=error) from None
        raise


_MESSAGES = {
    "depth": "The document is {found} fields deep; the limit is {maximum}.",
    "aliases": "The document has {found} aliases; the limit is {maximum}.",
    "directives": "The document has {found} directives; the limit is {maximum}.",
}


@dataclass
class _Document:
    """A parsed document and what checking it found."""

    node: DocumentNode
    refusals: list[GraphQLError] | None = None
    costs: dict[str | None, int] = field(default_factory=dict)  # by operation, if constant
    validated: dict[tuple[type[ASTValidationRule], ...], list[GraphQLError]] = field(
        default_factory=dict
    )

    def check_shape(self, limits: Limits) -> list[GraphQLError]:
        if self.refusals is None:
            try:
                found = shape(self.node)
            except RecursionError:
                message = "The document nests too deeply to be measured."
                self.refusals = [_too_complex("depth", message, limits.max_depth)]
                return self.refusals
            measured = {
                "depth": (found.depth, limits.max_depth),
                "aliases": (found.aliases, limits.max_aliases),
                "directives": (found.directives, limits.max_directives),
            }
            self.refusals = [
                _too_complex(limit, _MESSAGES[limit].format(found=n, maximum=m), m, n)
                for limit, (n, m) in measured.items()
                if n > m
            ]
        return self.refusals

    def check_cost(self, context: ExecutionContext, limits: Limits) -> GraphQLError | None:
        name = context.operation_name
        total = self.costs.get(name)
        if total is None:
            operation = get_operation_ast(self.node, name)
            if operation is None:
                return None  # Strawberry refuses it before validation
            try:
                total, varies = cost(
                    context.schema._schema, self.node, operation, context.variables
                )
            except RecursionError:
                message = "The document nests too deeply to be measured."
                return _too_complex("depth", message, limits.max_depth)
            if not varies:
                self.costs[name] = total
        if total <= limits.max_cost:
            return None
        message = f"The operation costs {total}; the limit is {limits.max_cost}."
        return _too_complex("cost", message, limits.max_cost, total)


class Documents:
    """Parsed documents and what checking them found, for repeated queries. An AST and its
    validation take 100 to 300 times the document's size, so only documents of at most
    `max_entry` characters are kept, in an LRU of at most `max_total` characters (64 KiB:
    some 10 to 20 MB)."""

    def __init__(self, max_total: int = 64 * 1024, max_entry: int = 4 * 1024) -> None:
        self.max_total = max_total
        self.max_entry = max_entry
        self._entries: OrderedDict[str, _Document] = OrderedDict()
        self._total = 0

    def parse(self, query: str, limits: Limits) -> _Document:
        found = self._entries.get(query)
        if found is not None:
            self._entries.move_to_end(query)
            return found
        check_size(query, limits.max_document_bytes)
        document = _Document(_parse(query, limits))
        if len(query) <= self.max_entry:
            self._entries[query] = document
            self._total += len(query)
            while self._total > self.max_total:
                evicted, _ = self._entries.popitem(last=False)
                self._total -= len(evicted)
        return document


class QueryLimits(SchemaExtension):
    """Parses within the token limit, refuses a document over a limit, then validates the
    rest; in place of Strawberry's ParserCache and ValidationCache, which keep documents of
    any size (and whose depth and alias limiters re-walk a fragment at every spread)."""

    def __init__(self, limits: Limits, documents: Documents) -> None:
        super().__init__()
        self.limits = limits
        self.documents = documents
        self._document: _Document | None = None

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        if context.query:
            self._document = self.documents.parse(context.query, self.limits)
            context.graphql_document = self._document.node
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = self._document
        if document is not None:
            context.pre_execution_errors = self._check(document, context)
            if not context.pre_execution_errors and isinstance(context.context, Context):
                context.context.operation_name = context.operation_name or ""
        yield

    def _check(self, document: _Document, context: ExecutionContext) -> list[GraphQLError]:
        refusals = document.check_shape(self.limits)
        if refusals:
            return list(refusals)
        refusal = document.check_cost(context, self.limits)
        if refusal is not None:
            return [refusal]
        rules = context.validation_rules
        errors = document.validated.get(rules)
        if errors is None:
            errors = validate_document(context.schema._schema, document.node, rules)
            document.validated[rules] = errors
        return list(errors)
