"""The `threats` list and `threat(id)`: filters, ordering, paging."""

from __future__ import annotations

import datetime as dt

from resolvers.records import Severity
from resolvers.store import Database
from tests.conftest import NOW, Execute, add, threat_input

PAGE = """query($page: Int!, $limit: Int!, $filter: ThreatFilter) {
  threats(page: $page, limit: $limit, filter: $filter) {
    total page limit hasNextPage items { id externalId severity source publishedAt }
  }
}"""


async def page(
    execute: Execute, page: int = 1, limit: int = 10, **filter: object
) -> dict[str, object]:
    result = await execute(PAGE, {"page": page, "limit": limit, "filter": filter or None})
    assert not result.errors
    return result.data["threats"]  # type: ignore[no-any-return]


async def test_threats_are_newest_first_then_by_id(db: Database, execute: Execute) -> None:
    same_time = NOW - dt.timedelta(hours=1)
    await add(db, threat_input(1, published_at=same_time), threat_input(2, published_at=same_time))
    await add(
        db,
        threat_input(3, published_at=NOW),
        threat_input(4, published_at=NOW - dt.timedelta(days=3)),
    )
    items = (await page(execute))["items"]
    ids = [i["externalId"] for i in items]  # type: ignore[index]
    assert ids[0] == "CVE-2026-1003"
    assert ids[-1] == "CVE-2026-1004"
    tied = [i for i in items if i["publishedAt"] == "2026-03-14T14:09:26Z"]  # type: ignore[index]
    assert [int(t["id"]) for t in tied] == sorted((int(t["id"]) for t in tied), reverse=True)


async def test_pages_split_the_list_and_total_counts_every_match(
    db: Database, execute: Execute
) -> None:
    await add(db, *(threat_input(n) for n in range(1, 26)))
    first, third = await page(execute, 1, 10), await page(execute, 3, 10)
    assert first["total"] == 25
    assert first["hasNextPage"] is True
    assert len(first["items"]) == 10  # type: ignore[arg-type]
    assert len(third["items"]) == 5
    assert third["hasNextPage"] is False
    beyond = await page(execute, 9, 10)
    assert beyond["items"] == []
    assert beyond["total"] == 25


async def test_filters_combine_with_and_and_severities_with_or(
    db: Database, execute: Execute
) -> None:
    await add(
        db,
        threat_input(1, severity=Severity.HIGH),
        threat_input(2, severity=Severity.CRITICAL),
        threat_input(3, severity=Severity.LOW),
        threat_input(
            4, severity=Severity.HIGH, source="otx", external_id="otx-4", category="malware"
        ),
    )
    high_or_critical = await page(execute, severity=["HIGH", "CRITICAL"])
    assert high_or_critical["total"] == 3
    nvd_high = await page(execute, severity=["HIGH"], source="nvd")
    assert [i["externalId"] for i in nvd_high["items"]] == ["CVE-2026-1001"]  # type: ignore[attr-defined]
    malware = await page(execute, category="malware")
    assert malware["total"] == 1
    assert (await page(execute, source="nowhere"))["total"] == 0


async def test_search_matches_title_or_description_case_insensitively(
    db: Database, execute: Execute
) -> None:
    await add(
        db,
        threat_input(1, title="Apache Struts RCE", description="nothing here"),
        threat_input(2, title="Other", description="Affects APACHE httpd"),
        threat_input(3, title="Unrelated", description=None),
        threat_input(4, title="100% sure_thing", description=None),
    )
    assert (await page(execute, search="apache"))["total"] == 2
    assert (await page(execute, search="STRUTS"))["total"] == 1
    # LIKE wildcards in the search are literal characters.
    assert (await page(execute, search="%"))["total"] == 1
    assert (await page(execute, search="e_t"))["total"] == 1


async def test_since_keeps_threats_published_at_or_after_it(db: Database, execute: Execute) -> None:
    await add(db, *(threat_input(n) for n in (1, 5, 48)))
    since = (NOW - dt.timedelta(hours=5)).isoformat()
    assert (await page(execute, since=since))["total"] == 2


async def test_threat_by_id_returns_it_or_null(db: Database, execute: Execute) -> None:
    await add(db, threat_input(1))
    listed = (await page(execute))["items"][0]  # type: ignore[index]
    query = "query($id: ID!) { threat(id: $id) { id title tags indicators { kind value } url } }"
    found = await execute(query, {"id": listed["id"]})
    assert not found.errors
    assert found.data["threat"]["title"] == "OpenSSL flaw number 1"
    assert found.data["threat"]["indicators"] == [{"kind": "CVE", "value": "CVE-2026-1001"}]
    missing = await execute(query, {"id": "999999"})
    assert not missing.errors
    assert missing.data["threat"] is None


async def test_many_threats_by_id_cost_one_query(db: Database, execute: Execute) -> None:
    await add(db, *(threat_input(n) for n in range(1, 6)))
    before = db.queries
    result = await execute(
        "{ a: threat(id: 1) { id } b: threat(id: 2) { id } "
        "c: threat(id: 3) { id } z: threat(id: 77) { id } }"
    )
    assert not result.errors
    assert [result.data[k] for k in "abcz"] == [{"id": "1"}, {"id": "2"}, {"id": "3"}, None]
    assert db.queries - before == 1
