"""GraphQL over HTTP: POST JSON, GET for queries, GraphiQL for browsers.

Written on Starlette rather than Strawberry's router so that every failure, down to a
body that is not JSON, is answered as a GraphQL error with an `extensions.code`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import orjson
from starlette.datastructures import Headers, QueryParams
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope
from strawberry.exceptions import MissingQueryError
from strawberry.schema import BaseSchema
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from cache.operation import NAME as OPERATION_NAME
from graph.context import Context
from graph.errors import ApiError, BadRequest, BadUserInput, format_error, http_error, log_errors
from graph.limits import Limits, QueryTooLarge, check_size
from graph.pages import graphiql_page
from graph.persisted import PersistedQueries

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"


class _MethodNotAllowed(ApiError):
    code = "METHOD_NOT_ALLOWED"
    status = 405


def negotiate(accept: str) -> str:
    """The media type an answer is sent as: the new GraphQL one when the client prefers it to
    plain JSON (a higher q, or as high and listed first), else JSON. Shared with the
    whole-operation cache, whose key must follow it exactly."""
    ranked: dict[str, tuple[float, int]] = {}
    for position, part in enumerate(accept.split(",")):
        media, *parameters = part.split(";")
        media = media.strip().lower()
        if media not in (GRAPHQL_RESPONSE, JSON) or media in ranked:
            continue
        quality = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        ranked[media] = (quality if 0 <= quality <= 1 else 0.0, -position)
    preferred = ranked.get(GRAPHQL_RESPONSE)
    plain = ranked.get(JSON)
    if preferred is not None and preferred[0] > 0 and (plain is None or preferred > plain):
        return GRAPHQL_RESPONSE
    return JSON


class SecurityHeaders:
    """Outermost ASGI layer: every response, cached or not, error or not, tells browsers not
    to guess its type (crawler text inside JSON must never be sniffed as HTML)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    h for h in message.get("headers", []) if h[0] != b"x-content-type-options"
                ]
                message = {
                    **message,
                    "headers": [*headers, (b"x-content-type-options", b"nosniff")],
                }
            await send(message)

        await self.app(scope, receive, with_headers)


def _graphiql(method: str, accept: str, query_params: QueryParams) -> bool:
    """A browser opening the endpoint: answered with GraphiQL, never with an operation."""
    return method == "GET" and "text/html" in accept and "query" not in query_params


def response_variant(scope: Scope) -> str | None:
    """What the endpoint's answer depends on beyond the GraphQL request itself: the media type
    it negotiates; None when it answers with GraphiQL. The whole-operation cache keys on it."""
    accept = Headers(scope=scope).get("accept", "")
    if _graphiql(scope["method"], accept, QueryParams(scope.get("query_string", b""))):
        return None
    return negotiate(accept)


# orjson sizes its reader's buffers from the input: a 9 MB body peaks at some 110 MB (12x), a
# 4.4 MB crawler batch at 60 MB, where the standard library's parser peaks at 2-3x and is as
# fast on bodies this large (8.3 ms against 9.5 ms for that batch). Large bodies go to it,
# held to orjson's rules: strict UTF-8, no NaN or Infinity, no lone surrogates (a body that
# escapes any surrogate is left to orjson, which refuses a lone one).
LARGE_BODY = 256 * 1024
_ESCAPED_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads(body: bytes) -> Any:
    """The JSON value of a request body; ValueError (or RecursionError) when it is none."""
    if len(body) <= LARGE_BODY or _ESCAPED_SURROGATE.search(body):
        return orjson.loads(body)
    return json.loads(body.decode("utf-8"), parse_constant=_no_constant)


def json_response(
    body: Any, status: int = 200, media_type: str = JSON, headers: dict[str, str] | None = None
) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=media_type, headers=headers)


async def _params(request: Request) -> dict[str, Any]:
    if request.method in ("GET", "HEAD"):
        params: dict[str, Any] = dict(request.query_params)
        for name in ("variables", "extensions"):
            if isinstance(params.get(name), str):
                try:
                    params[name] = orjson.loads(params[name])
                except orjson.JSONDecodeError:
                    raise BadRequest(f"the '{name}' query parameter is not valid JSON") from None
        return params
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()  # at most MAX_BODY_BYTES: see graph/body_limit.py
    if content_type == "application/graphql":
        return {"query": body.decode("utf-8", "replace")}
    if content_type not in (JSON, ""):
        raise BadRequest(f"send the request as {JSON}, not {content_type}")
    try:
        parsed = loads(body)
    except (ValueError, RecursionError):
        raise BadRequest("the request body is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise BadRequest("the request body must be a JSON object with a 'query'")
    return parsed


def _check(
    params: dict[str, Any], max_document_bytes: int
) -> tuple[str, dict[str, Any] | None, str | None]:
    query, variables, name = (
        params.get("query"),
        params.get("variables"),
        params.get("operationName"),
    )
    if not isinstance(query, str) or not query.strip():
        raise BadRequest("the request has no 'query' string")
    check_size(query, max_document_bytes)  # before anything reads it
    if variables is not None and not isinstance(variables, dict):
        raise BadRequest("'variables' must be a JSON object")
    if name is not None and not isinstance(name, str):
        raise BadRequest("'operationName' must be a string")
    if variables is not None and _has_nul(variables):
        raise BadUserInput("a string in 'variables' contains a NUL character")
    return query, variables, name


def _has_nul(value: Any) -> bool:
    """A NUL anywhere in a string of a JSON value (databases and logs treat it differently).
    orjson writes a NUL as \\u0000, so most values are cleared by one search of their JSON
    (a 1,000-threat batch: 1 ms, against 30 ms walking it); the walk settles the rest."""
    try:
        if b"\\u0000" not in orjson.dumps(value):
            return False
    except TypeError:  # an integer past 64 bits: walk it
        pass
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def graphql_endpoint(
    schema: BaseSchema,
    context_for: Callable[[Request], Context],
    persisted: PersistedQueries | None = None,
    *,
    graphiql: bool = True,
    max_document_bytes: int = Limits().max_document_bytes,
) -> Callable[[Request], Any]:
    """The Starlette endpoint serving `schema` at one path (and GraphiQL to browsers, unless
    `graphiql` is off); a document longer than `max_document_bytes` is refused unparsed."""

    async def endpoint(request: Request) -> Response:
        """HEAD (which Starlette's route advertises with GET) is answered as GET, unsent."""
        response = await answer(request)
        if request.method != "HEAD":
            return response
        # Its headers, content-length included, with no body.
        return Response(status_code=response.status_code, headers=dict(response.headers))

    async def answer(request: Request) -> Response:
        accept = request.headers.get("accept", "")
        media_type = negotiate(accept)
        method = "GET" if request.method == "HEAD" else request.method
        if graphiql and _graphiql(method, accept, request.query_params):
            return graphiql_page()
        if method not in ("GET", "POST"):
            error: ApiError = _MethodNotAllowed("use GET, HEAD or POST")
            return json_response(
                http_error(error), error.status, media_type, {"Allow": "GET, HEAD, POST"}
            )
        try:
            params = await _params(request)
            if persisted is not None:
                params = await persisted.resolve(params)
            query, variables, operation_name = _check(params, max_document_bytes)
            allowed = (
                {OperationType.QUERY}
                if method == "GET"
                else {OperationType.QUERY, OperationType.MUTATION}
            )
            context = context_for(request)
            try:
                result = await schema.execute(
                    query,
                    variable_values=variables,
                    context_value=context,
                    operation_name=operation_name,
                    allowed_operation_types=allowed,
                )
            finally:
                if context.operation_name is not None:  # it validated: the outer layers' label
                    request.scope[OPERATION_NAME] = context.operation_name
        except QueryTooLarge as exc:
            log_errors([exc])
            # Answered as one that did not parse. Without its traceback: kept in `result`, it
            # would hold this frame, and so the document, in a cycle until a full collection.
            result = ExecutionResult(data=None, errors=[exc.with_traceback(None)])
        except ApiError as exc:
            return json_response(
                http_error(exc), exc.status, media_type, {"cache-control": "no-store"}
            )
        except CannotGetOperationTypeError:
            error = BadRequest(
                "the document has several operations: name one in 'operationName'"
                if operation_name is None
                else f"the document has no operation named {operation_name!r:.100}"
            )
            return json_response(http_error(error), error.status, media_type)
        except InvalidOperationTypeError as exc:
            if exc.operation_type is not OperationType.MUTATION:  # a subscription
                error = BadRequest("subscriptions are not supported: the schema has none")
                return json_response(http_error(error), error.status, media_type)
            error = _MethodNotAllowed("mutations must be sent with POST")
            return json_response(http_error(error), error.status, media_type, {"Allow": "POST"})
        except MissingQueryError:
            error = BadRequest("the request has no 'query' string")
            return json_response(http_error(error), error.status, media_type)
        # The GraphQL-over-HTTP spec: a request that never executed (it did not parse or
        # validate: no error has a path) has no `data` entry and is a 400 under the new media
        # type; one that executed has `data`, null or not, and a 2xx. application/json keeps
        # 200 and `data` for every well-formed request.
        executed = result.data is not None or any(e.path for e in result.errors or ())
        if persisted is not None and executed:
            await persisted.register(params)  # a document that parsed and validated
        refused = media_type == GRAPHQL_RESPONSE and not executed
        body: dict[str, Any] = {} if refused else {"data": result.data}
        if result.errors:
            body["errors"] = [format_error(e) for e in result.errors]
        if result.extensions:
            body["extensions"] = result.extensions
        status = 400 if refused else 200
        # The operation cache, when it can, replaces this with the composed policy.
        return json_response(body, status, media_type, {"cache-control": "no-store"})

    return endpoint
