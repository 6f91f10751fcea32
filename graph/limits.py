"""Limits on what one GraphQL document may ask, enforced before any resolver runs.

    limit        setting                       checked                           code
    size         GRAPHQL_MAX_DOCUMENT_BYTES    before parsing                    QUERY_TOO_LARGE
    tokens       GRAPHQL_MAX_TOKENS            while parsing                     QUERY_TOO_COMPLEX
    depth        GRAPHQL_MAX_DEPTH             after parsing                     QUERY_TOO_COMPLEX
    aliases      GRAPHQL_MAX_ALIASES           after parsing                     QUERY_TOO_COMPLEX
    directives   GRAPHQL_MAX_DIRECTIVES        after parsing                     QUERY_TOO_COMPLEX
    token        (a mutation's role)           after parsing                     UNAUTHENTICATED, FORBIDDEN
    list         (the longest list accepted)   after parsing, in the variables   BAD_USER_INPUT
    values       GRAPHQL_MAX_VARIABLE_VALUES   after parsing, in the variables   QUERY_TOO_COMPLEX
    cost         GRAPHQL_MAX_COST              after parsing, with the variables QUERY_TOO_COMPLEX

All of them before graphql-core's validation, some of whose rules are quadratic in the
document, and before it coerces the variables (800,000 severities in one list took it 2.9 s).
A refusal is a GraphQL error whose extensions name the limit and its maximum.
How depth, aliases, directives and cost are counted: `graph.cost`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    ASTValidationRule,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSyntaxError,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    parse,
    validate,
)
from graphql.utilities import get_operation_ast
from strawberry.extensions import SchemaExtension
from strawberry.schema.exceptions import CannotGetOperationTypeError
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule
from strawberry.types import ExecutionContext

from graph.context import MUTATION_ROLES, Context, Role
from graph.cost import cost, shape
from graph.errors import ApiError
from resolvers.ingest import MAX_BATCH

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
    # Values in a query's variables (every list item, object and field counts one; a
    # mutation's are not counted, see check_variables).
    max_variable_values: int = 100_000


# No argument takes a longer list than the ingest's batch (tags: 50, indicators: 200).
MAX_VARIABLE_LIST = MAX_BATCH


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


def _mutation_fields(
    document: DocumentNode, selection_set: SelectionSetNode, seen: set[str]
) -> Iterator[str]:
    """The root fields a mutation selects, through its fragments (each read once)."""
    fragments: dict[str, FragmentDefinitionNode] | None = None
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            yield selection.name.value
        elif isinstance(selection, InlineFragmentNode):
            yield from _mutation_fields(document, selection.selection_set, seen)
        elif isinstance(selection, FragmentSpreadNode) and selection.name.value not in seen:
            seen.add(selection.name.value)
            if fragments is None:
                fragments = {
                    d.name.value: d
                    for d in document.definitions
                    if isinstance(d, FragmentDefinitionNode)
                }
            fragment = fragments.get(selection.name.value)
            if fragment is not None:
                yield from _mutation_fields(document, fragment.selection_set, seen)


def check_token(
    document: DocumentNode, operation: OperationDefinitionNode, context: object
) -> GraphQLError | None:
    """UNAUTHENTICATED or FORBIDDEN for a mutation whose caller lacks a role it needs
    (even under @skip: a caller without the token has no business sending it)."""
    if operation.operation is not OperationType.MUTATION or not isinstance(context, Context):
        return None
    fields = set(_mutation_fields(document, operation.selection_set, set()))
    roles = {MUTATION_ROLES[f] for f in fields if f in MUTATION_ROLES}
    for role in sorted(roles, key=lambda r: r is Role.ADMIN):
        try:
            context.require(role)
        except ApiError as error:
            return GraphQLError(error.message, original_error=error)
    return None


def check_variables(
    operation: OperationDefinitionNode, variables: dict[str, Any] | None, limits: Limits
) -> GraphQLError | None:
    """BAD_USER_INPUT for a list in the operation's variables longer than any argument takes
    (as the ingest says of a batch over 1,000), QUERY_TOO_COMPLEX for more values in the
    variables of a query than `limits.max_variable_values`; counting stops at the first list
    or value over (variables the operation does not declare are never read, nor coerced).
    A mutation's values are not counted: its caller's token was checked first, and a full
    batch (1,000 threats of 200 indicators) holds some 600,000 in a body under the cap."""
    if not variables:
        return None
    maximum = (
        limits.max_variable_values if operation.operation is not OperationType.MUTATION else None
    )
    declared = [d.variable.name.value for d in operation.variable_definitions or ()]
    stack = [variables[name] for name in declared if name in variables]
    found = 0
    while stack:
        value = stack.pop()
        found += 1
        if isinstance(value, list):
            if len(value) > MAX_VARIABLE_LIST:
                message = (
                    f"A list in the variables has {len(value)} items;"
                    f" no argument takes more than {MAX_VARIABLE_LIST}."
                )
                extensions = {
                    "code": "BAD_USER_INPUT",
                    "limit": "list",
                    "maximum": MAX_VARIABLE_LIST,
                    "found": len(value),
                }
                return GraphQLError(message, extensions=extensions)
            stack.extend(value)
        elif isinstance(value, dict):
            stack.extend(value.values())
        if maximum is not None and found + len(stack) > maximum:
            message = (
                f"The variables hold more than {limits.max_variable_values} values"
                " (each list item, object and field counts one)."
            )
            return _too_complex("values", message, limits.max_variable_values)
    return None


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

    def __init__(
        self, limits: Limits, documents: Documents, *, hide_suggestions: bool = False
    ) -> None:
        super().__init__()
        self.limits = limits
        self.documents = documents
        self.hide_suggestions = hide_suggestions
        self._document: _Document | None = None

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        if context.query:
            self._document = self.documents.parse(context.query, self.limits)
            context.graphql_document = self._document.node
            # Strawberry would run the first of several operations when none is named.
            if context._provided_operation_name is None and _operations(self._document.node) > 1:
                raise CannotGetOperationTypeError(None)
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
        operation = get_operation_ast(document.node, context.operation_name)
        if operation is not None:
            refusal = check_token(document.node, operation, context.context)
            refusal = refusal or check_variables(operation, context.variables, self.limits)
            if refusal is not None:
                return [refusal]
        refusal = document.check_cost(context, self.limits)
        if refusal is not None:
            return [refusal]
        # `documents` is this schema's own, so hide_suggestions is the same for every entry.
        rules = context.validation_rules
        errors = document.validated.get(rules)
        if errors is None:
            errors = validate(
                context.schema._schema,
                document.node,
                (*rules, MaybeNullValidationRule, OneOfInputValidationRule),
                hide_suggestions=self.hide_suggestions,
            )
            document.validated[rules] = errors
        return list(errors)


def _operations(document: DocumentNode) -> int:
    return sum(isinstance(d, OperationDefinitionNode) for d in document.definitions)
