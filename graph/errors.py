"""Errors of the API layer, and how every GraphQL error gets its `extensions.code`.

    ApiError
      ├── BadRequest        BAD_REQUEST: the HTTP request is not a GraphQL request
      ├── BadUserInput      BAD_USER_INPUT: a well-formed request whose values we refuse
      ├── Unauthenticated   UNAUTHENTICATED: no token, or a token that is not ours
      └── Forbidden         FORBIDDEN: a valid token without the role, or a role not configured

Errors raised on purpose (these and `resolvers.errors.ResolverError`) carry their own
code; graphql-core's parse and validation errors are coded here; anything else is a
bug, logged with its traceback and answered as INTERNAL_SERVER_ERROR without details.
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Any

from graphql import ASTValidationRule, GraphQLError, GraphQLSyntaxError, StringValueNode
from graphql.validation import NoSchemaIntrospectionCustomRule, ValuesOfCorrectTypeRule
from strawberry.extensions import SchemaExtension

from resolvers.errors import ResolverError

logger = logging.getLogger("vajra.errors")


class ApiError(Exception):
    """Root of the errors the API layer raises on purpose."""

    code = "INTERNAL_SERVER_ERROR"
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.extensions: dict[str, Any] = {"code": self.code}


class BadRequest(ApiError):
    code = "BAD_REQUEST"
    status = 400


class BadUserInput(ApiError):
    code = "BAD_USER_INPUT"
    status = 400


class Unauthenticated(ApiError):
    code = "UNAUTHENTICATED"
    status = 401


class Forbidden(ApiError):
    code = "FORBIDDEN"
    status = 403


class _CodedValuesOfCorrectType(ValuesOfCorrectTypeRule):
    """A literal argument of the wrong type or value is the user's input, not our schema's."""

    def report_error(self, error: GraphQLError) -> None:
        error.extensions = {**(error.extensions or {}), "code": "BAD_USER_INPUT"}
        super().report_error(error)


class _NoNulInStrings(ASTValidationRule):
    """A NUL in a string literal (written `\\u0000`) is refused like one in a variable."""

    def enter_string_value(self, node: StringValueNode, *_args: Any) -> None:
        if "\x00" in node.value:
            self.report_error(
                GraphQLError(
                    "a string argument contains a NUL character",
                    node,
                    extensions={"code": "BAD_USER_INPUT"},
                )
            )


class ErrorCodes(SchemaExtension):
    """Swap in the coded validation rule for literal values; refuse NULs in literals, and
    introspection where the request's context says it is off (production)."""

    def on_validate(self):  # type: ignore[no-untyped-def]
        context = self.execution_context
        rules: tuple[type[ASTValidationRule], ...] = tuple(
            _CodedValuesOfCorrectType if rule is ValuesOfCorrectTypeRule else rule
            for rule in context.validation_rules
        )
        rules = (*rules, _NoNulInStrings)
        if not getattr(context.context, "introspection", True):
            rules = (*rules, NoSchemaIntrospectionCustomRule)
        context.validation_rules = rules
        yield


_ARGUMENT_ERRORS = ("Argument '", "Variable '$")


def error_code(error: GraphQLError) -> str:
    original = error.original_error
    if isinstance(original, ApiError | ResolverError):
        return original.code
    code = (error.extensions or {}).get("code")
    if isinstance(code, str):
        return code
    if isinstance(error, GraphQLSyntaxError):
        return "GRAPHQL_PARSE_FAILED"
    if error.message.startswith(("Variable '$", "Too many errors processing variables")):
        return "BAD_USER_INPUT"  # graphql-core's variable coercion: the caller's values
    if isinstance(original, GraphQLError) and original.message.startswith(_ARGUMENT_ERRORS):
        # graphql-core's argument coercion while executing a field: a null variable for a
        # non-null argument with a default (valid by the spec's VariablesInAllowedPosition,
        # refused by its CoerceArgumentValues). The caller's values, not our bug.
        return "BAD_USER_INPUT"
    if original is not None:
        return "INTERNAL_SERVER_ERROR"
    return "GRAPHQL_VALIDATION_FAILED"


def format_error(error: GraphQLError) -> dict[str, Any]:
    """The error as the client sees it: a message and an `extensions.code`, never a trace."""
    code = error_code(error)
    formatted: dict[str, Any] = {"message": error.message}
    if error.locations:
        formatted["locations"] = [loc._asdict() for loc in error.locations]
    if error.path:
        formatted["path"] = error.path
    original = error.original_error
    if code == "INTERNAL_SERVER_ERROR":
        formatted["message"] = "Internal server error"
        formatted["extensions"] = {"code": code}
    elif isinstance(original, ApiError | ResolverError):
        formatted["message"] = original.message
        formatted["extensions"] = dict(original.extensions)
    else:
        formatted["extensions"] = {**(error.extensions or {}), "code": code}
    return formatted


LOGGED_CHARACTERS = 200


def log_errors(errors: list[GraphQLError]) -> None:
    """The client's mistakes at INFO, one line each, without a traceback; our bugs at ERROR
    with one. Never more than 200 characters of anything the client sent (a message can
    quote the document: graphql-core's str() of a syntax error prints the whole line)."""
    for error in errors:
        code = error_code(error)
        message = truncated(error.message)
        if code == "INTERNAL_SERVER_ERROR":
            exception = error.original_error or error
            logger.error("%s: %s", code, message, exc_info=_bounded(exception))
        else:
            logger.info("%s: %s", code, message)


def truncated(text: str, limit: int = LOGGED_CHARACTERS) -> str:
    """At most `limit` characters of client text, marked when cut."""
    return text if len(text) <= limit else text[:limit] + "..."


class _Truncated(Exception):
    """Stands in, in a logged traceback, for an exception whose text was too long."""


def _bounded(
    exception: BaseException,
) -> tuple[type[BaseException], BaseException, TracebackType | None]:
    """The exc_info to log `exception` with: its own traceback, but never more than 200
    characters of its text (str() of a GraphQLError prints its whole document), nor of the
    exceptions it was raised from."""
    chain: list[BaseException] = []
    link: BaseException | None = exception
    while link is not None and len(chain) < 5:
        chain.append(link)
        link = link.__cause__ or link.__context__
    if all(len(str(e)) <= LOGGED_CHARACTERS for e in chain):
        return type(exception), exception, exception.__traceback__
    stand_in: BaseException | None = None
    for link in reversed(chain):
        text = f"{type(link).__qualname__}: {truncated(str(link))}"
        replaced = _Truncated(text).with_traceback(link.__traceback__)
        replaced.__cause__ = stand_in
        stand_in = replaced
    assert stand_in is not None
    return _Truncated, stand_in, exception.__traceback__


_STATUS_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    406: "NOT_ACCEPTABLE",
    408: "REQUEST_TIMEOUT",
    413: "PAYLOAD_TOO_LARGE",
    414: "URI_TOO_LONG",
    415: "UNSUPPORTED_MEDIA_TYPE",
    416: "RANGE_NOT_SATISFIABLE",
    429: "TOO_MANY_REQUESTS",
    431: "REQUEST_HEADER_FIELDS_TOO_LARGE",
    503: "SERVICE_UNAVAILABLE",
}


def status_error(status: int, message: str) -> dict[str, Any]:
    """An HTTP-level refusal (no such route, a method it does not take...) in the same shape
    as every other error the API answers."""
    code = _STATUS_CODES.get(status, "INTERNAL_SERVER_ERROR" if status >= 500 else "BAD_REQUEST")
    return {"errors": [{"message": message, "extensions": {"code": code}}]}


def http_error(error: ApiError) -> dict[str, Any]:
    return {"errors": [{"message": error.message, "extensions": dict(error.extensions)}]}
