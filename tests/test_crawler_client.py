"""The crawler's HTTP policy: retried on 5xx and connection errors, never on 4xx or on
GraphQL errors that are the client's; how refused batches are reported."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable

import httpx
import pytest

from crawler import AuthRefused, Client, Counts, Refused, Retry, Summary, Unreachable, send
from crawler.threat import Threat
from tests.redis_server import free_port

NOW = dt.datetime(2026, 3, 14, tzinfo=dt.UTC)
OK = {"data": {"ingestThreats": {"inserted": 1, "updated": 0, "unchanged": 0}}}
Handler = Callable[[httpx.Request], httpx.Response]


class Server:
    """A fake server answering from a script, recording what it was sent."""

    def __init__(self, *answers: httpx.Response | Handler) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return answer(request) if callable(answer) else answer

    def batches(self) -> list[list[str]]:
        return [
            [t["externalId"] for t in json.loads(r.content)["variables"]["threats"]]
            for r in self.requests
        ]


def client(server: Server, attempts: int = 4, waits: list[float] | None = None) -> Client:
    sleep = waits.append if waits is not None else lambda _: None
    return Client(
        "http://vajra.test",
        "secret",
        retry=Retry(attempts=attempts, base=0.5),
        transport=httpx.MockTransport(server),
        sleep=sleep,
    )


def threats(n: int) -> list[Threat]:
    return [Threat("nvd", f"CVE-{i}", f"t{i}", "HIGH", "vulnerability", NOW) for i in range(n)]


def test_a_5xx_is_retried_with_growing_waits_then_succeeds() -> None:
    server = Server(
        httpx.Response(503), httpx.Response(502), httpx.Response(500), httpx.Response(200, json=OK)
    )
    waits: list[float] = []
    assert client(server, waits=waits).ingest([]) == Counts(inserted=1)
    assert len(server.requests) == 4
    assert server.requests[0].headers["authorization"] == "Bearer secret"
    # Jittered in [half, whole] of 0.5, 1, 2 seconds.
    assert [0.25 <= waits[0] <= 0.5, 0.5 <= waits[1] <= 1, 1 <= waits[2] <= 2] == [True] * 3


def test_a_server_fault_in_graphql_errors_is_retried() -> None:
    fault = {
        "data": None,
        "errors": [{"message": "boom", "extensions": {"code": "INTERNAL_SERVER_ERROR"}}],
    }
    server = Server(httpx.Response(200, json=fault), httpx.Response(200, json=OK))
    assert client(server).ingest([]) == Counts(inserted=1)
    assert len(server.requests) == 2


@pytest.mark.parametrize("status", [400, 404, 413, 422, 429])
def test_a_4xx_is_not_retried(status: int) -> None:
    server = Server(httpx.Response(status, json={"errors": [{"message": "no"}]}))
    with pytest.raises(Refused) as refused:
        client(server).ingest([])
    assert refused.value.status == status
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (httpx.Response(401, json={"errors": [{"message": "send a token"}]}), AuthRefused),
        (
            httpx.Response(
                200,
                json={
                    "data": None,
                    "errors": [{"message": "x", "extensions": {"code": "FORBIDDEN"}}],
                },
            ),
            AuthRefused,
        ),
        (
            httpx.Response(
                200,
                json={
                    "data": None,
                    "errors": [{"message": "bad", "extensions": {"code": "BAD_USER_INPUT"}}],
                },
            ),
            Refused,
        ),
    ],
)
def test_graphql_errors_that_are_ours_are_not_retried(
    answer: httpx.Response, error: type[Exception]
) -> None:
    server = Server(answer)
    with pytest.raises(error):
        client(server).ingest([])
    assert len(server.requests) == 1


def test_a_refused_connection_is_retried_then_fails_with_a_clear_message() -> None:
    waits: list[float] = []
    port = free_port()  # nobody listens on it
    crawler = Client(
        f"http://127.0.0.1:{port}", None, retry=Retry(attempts=3, base=0.01), sleep=waits.append
    )
    with pytest.raises(
        Unreachable,
        match=rf"POST http://127.0.0.1:{port}/graphql: gave up after 3 tries; last: ConnectError",
    ):
        crawler.ingest([])
    assert len(waits) == 2


def test_batches_are_of_at_most_1000() -> None:
    server = Server(
        lambda r: httpx.Response(
            200,
            json={
                "data": {
                    "ingestThreats": {
                        "inserted": len(json.loads(r.content)["variables"]["threats"]),
                        "updated": 0,
                        "unchanged": 0,
                    }
                }
            },
        )
    )
    summary = Summary()
    send(threats(2_500), client(server), summary)
    assert [len(b) for b in server.batches()] == [1_000, 1_000, 500]
    assert summary.inserted == 2_500
    assert summary.exit_code == 0


def test_a_batch_refused_for_some_records_goes_again_without_them() -> None:
    refused = {
        "data": None,
        "errors": [
            {
                "message": "2 invalid field(s)",
                "extensions": {
                    "code": "BAD_USER_INPUT",
                    "problems": [
                        {"path": "threats[1].title", "message": "must not be empty"},
                        {
                            "path": "threats[2]",
                            "message": "repeats threats[0]'s source and externalId",
                        },
                    ],
                },
            }
        ],
    }
    server = Server(httpx.Response(200, json=refused), httpx.Response(200, json=OK))
    summary = Summary()
    send(threats(4), client(server), summary)
    assert server.batches() == [["CVE-0", "CVE-1", "CVE-2", "CVE-3"], ["CVE-0", "CVE-3"]]
    assert [(r.record, r.reason) for r in summary.rejected] == [
        ("CVE-1", "refused by the server: title must not be empty"),
        ("CVE-2", "refused by the server: repeats threats[0]'s source and externalId"),
    ]
    assert summary.exit_code == 1


def test_a_batch_refused_whole_rejects_every_record_and_the_crawl_goes_on() -> None:
    server = Server(
        httpx.Response(400, json={"errors": [{"message": "query too complex"}]}),
        httpx.Response(200, json=OK),
    )
    summary = Summary()
    send(threats(3), client(server), summary, size=2)
    assert len(summary.rejected) == 2
    assert (
        summary.rejected[0].reason
        == "the server refused its batch of 2: HTTP 400: query too complex"
    )
    assert summary.inserted == 1


def test_a_body_too_large_is_halved() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        sent = json.loads(request.content)["variables"]["threats"]
        if len(sent) > 2:
            return httpx.Response(413)
        return httpx.Response(
            200,
            json={"data": {"ingestThreats": {"inserted": len(sent), "updated": 0, "unchanged": 0}}},
        )

    server = Server(answer)
    summary = Summary()
    send(threats(5), client(server), summary)
    assert summary.inserted == 5
    assert not summary.rejected
    assert [len(b) for b in server.batches()] == [5, 2, 3, 1, 2]


def test_a_refused_token_stops_the_crawl_and_counts_what_was_not_sent() -> None:
    server = Server(
        httpx.Response(200, json=OK),
        httpx.Response(401, json={"errors": [{"message": "the bearer token is not valid"}]}),
    )
    summary = Summary()
    send(threats(5), client(server), summary, size=2)
    assert (summary.inserted, summary.unsent, summary.exit_code) == (1, 3, 3)
    assert isinstance(summary.error, AuthRefused)
    assert len(server.requests) == 2


def test_an_unreachable_server_stops_the_crawl() -> None:
    server = Server(httpx.Response(503))
    summary = Summary()
    send(threats(3), client(server, attempts=2), summary)
    assert (summary.unsent, summary.exit_code) == (3, 3)
    assert isinstance(summary.error, Unreachable)
    assert "gave up after 2 tries; last: HTTP 503" in summary.error.message


def test_each_retry_is_announced_with_its_reason() -> None:
    notes: list[str] = []
    server = Server(httpx.Response(503), httpx.Response(200, json=OK))
    crawler = client(server)
    crawler.on_retry = notes.append
    crawler.ingest([])
    assert len(notes) == 1
    assert notes[0].startswith("POST http://vajra.test/graphql: HTTP 503; try 2 of 4 in ")


def test_a_feed_url_is_fetched_with_retries_and_without_the_token() -> None:
    server = Server(httpx.Response(500), httpx.Response(200, content=b'{"vulnerabilities": []}'))
    assert client(server).fetch("http://feeds.test/kev.json") == b'{"vulnerabilities": []}'
    assert [r.headers.get("authorization") for r in server.requests] == [None, None]
