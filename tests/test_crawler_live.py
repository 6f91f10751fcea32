"""`vajra crawl` as a user runs it: a subprocess, against a live `vajra serve`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import asyncio as aioredis

from tests.conftest import CRAWLER, REDIS_URL
from tests.redis_server import free_port
from tests.servers import Server, base_env, sqlite_server, vajra

DATA = Path(__file__).parent / "data"


@pytest.fixture
async def server(tmp_path: Path, redis_client: aioredis.Redis) -> AsyncIterator[Server]:
    async with sqlite_server(
        "crawl", tmp_path, redis_client, REDIS_URL, VAJRA_CRAWLER_TOKEN=CRAWLER
    ) as api:
        yield api


async def crawl(server: Server | None, name: str, fmt: str, *extra: str) -> tuple[int, str]:
    url = server.url if server else f"http://127.0.0.1:{free_port()}"
    env = base_env(VAJRA_CRAWLER_TOKEN=CRAWLER)
    return await vajra(env, "crawl", str(DATA / name), "--format", fmt, "--server", url, *extra)


async def read(server: Server, source: str) -> Any:
    query = """query($source: String) { threats(limit: 50, filter: {source: $source}) {
      total items { externalId title severity tags indicators { kind value } } } }"""
    async with httpx.AsyncClient(base_url=server.url) as http:
        answer = await http.post("/graphql", json={"query": query, "variables": {"source": source}})
    body = answer.json()
    assert "errors" not in body, body
    return body["data"]["threats"]


async def test_a_kev_feed_is_ingested_and_a_second_run_is_all_unchanged(server: Server) -> None:
    code, output = await crawl(server, "kev.json", "kev")
    assert code == 1, output  # two records rejected, and said which
    assert "read 5 record(s): inserted 3, updated 0, unchanged 0, rejected 2" in output
    assert "CVE-2026-0002: 'dateAdded' is not an ISO-8601 date: 'last Tuesday'" in output
    assert "CVE-2026-0003: title must be at most 500 characters" in output
    assert "Traceback" not in output

    shown = await read(server, "cisa-kev")
    assert shown["total"] == 3
    threats = {t["externalId"]: t for t in shown["items"]}
    assert threats["CVE-2021-44228"]["severity"] == "CRITICAL"
    assert threats["CVE-2021-44228"]["indicators"] == [{"kind": "CVE", "value": "CVE-2021-44228"}]
    # Feed text is stored as the text it is.
    assert threats["CVE-2023-20198"]["title"].endswith("<script>alert(1)</script>")

    code, output = await crawl(server, "kev.json", "kev")
    assert code == 1, output
    assert "inserted 0, updated 0, unchanged 3, rejected 2" in output


async def test_nvd_and_stix_feeds_are_ingested_and_rerun_unchanged(server: Server) -> None:
    code, output = await crawl(server, "nvd.json", "nvd")
    assert code == 0, output
    assert "read 4 record(s): inserted 3, updated 0, unchanged 0, rejected 0, skipped 1" in output
    code, output = await crawl(server, "stix.json", "stix", "--quiet")
    assert code == 1, output
    assert "read 9 record(s): inserted 5, updated 0, unchanged 0, rejected 1, skipped 3" in output
    assert "malware--6b616fc1-1505-48e3-8b2c-0d19337bff38: 'created' is not" in output

    nvd = await read(server, "nvd")
    assert {t["externalId"]: t["severity"] for t in nvd["items"]} == {
        "CVE-2021-44228": "CRITICAL",
        "CVE-2012-1823": "HIGH",
        "CVE-2026-10001": "INFO",
    }
    stix = await read(server, "stix")
    assert stix["total"] == 5

    code, output = await crawl(server, "nvd.json", "nvd")
    assert (code, "inserted 0, updated 0, unchanged 3" in output) == (0, True), output
    code, output = await crawl(server, "stix.json", "stix")
    assert "inserted 0, updated 0, unchanged 5" in output


async def test_a_feed_over_1000_records_goes_in_batches(server: Server, tmp_path: Path) -> None:
    entries = [
        {
            "cveID": f"CVE-2025-{n:05d}",
            "vendorProject": "Example",
            "product": f"Product {n % 7}",
            "vulnerabilityName": f"Example Product {n % 7} flaw {n}",
            "dateAdded": "2025-06-01",
            "shortDescription": "Generated for the batching test. " * 20,
            "knownRansomwareCampaignUse": "Known" if n % 10 == 0 else "Unknown",
        }
        for n in range(2_345)
    ]
    feed = tmp_path / "big-kev.json"
    feed.write_text(json.dumps({"vulnerabilities": entries}))
    code, output = await crawl(server, str(feed), "kev")
    assert code == 0, output
    assert "read 2,345 record(s): inserted 2,345, updated 0, unchanged 0, rejected 0" in output
    shown = await read(server, "cisa-kev")
    assert shown["total"] == 2_345
    code, output = await crawl(server, str(feed), "kev", "--quiet")
    assert "inserted 0, updated 0, unchanged 2,345, rejected 0" in output


async def test_a_wrong_token_is_refused_once_and_said(server: Server) -> None:
    code, output = await crawl(server, "nvd.json", "nvd", "--token", "not-the-token")
    assert code == 3, output
    assert "not sent 3" in output
    assert "error: the server refused the token (HTTP 200): the bearer token is not valid" in output
    assert (await read(server, "nvd"))["total"] == 0


async def test_an_unreachable_server_is_retried_then_a_clear_error() -> None:
    code, output = await crawl(None, "nvd.json", "nvd", "--retries", "1")
    assert code == 3, output
    assert "gave up after 2 tries; last: ConnectError" in output
    assert "Traceback" not in output


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not JSON: Expecting property name"),
        ('{"objects": []}', "not a KEV catalog: no 'vulnerabilities' list at the top level"),
    ],
)
async def test_a_malformed_file_is_one_line_and_exit_code_2(
    tmp_path: Path, content: str, message: str
) -> None:
    feed = tmp_path / "feed.json"
    feed.write_text(content)
    env = base_env()
    code, output = await vajra(
        env, "crawl", str(feed), "--format", "kev", "--server", "http://127.0.0.1:9"
    )
    assert code == 2, output
    assert message in output
    assert output.count("\n") == 1
    code, output = await vajra(env, "crawl", str(tmp_path / "missing.json"), "--format", "kev")
    assert (code, output.strip()) == (
        2,
        f"vajra crawl: cannot read {tmp_path / 'missing.json'}: No such file or directory",
    )
