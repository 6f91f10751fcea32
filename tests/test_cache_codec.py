"""The cache codec round-trips every cached field of the real schema to the same typed value.

A cached entry is stored as `encode({"t": ..., "g": [...], "v": value})` and read back as
`decoder_for(field.type)(orjson.loads(raw)["v"])`; these tests go through exactly that path.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
import strawberry
from hypothesis import given, settings
from hypothesis import strategies as st
from strawberry.types.base import StrawberryList, StrawberryOptional

from cache.codec import decoder_for, encode
from cache.exceptions import CacheError
from cache.extension import CachedField
from graph.schema import schema
from graph.types import (
    Indicator,
    SeverityCount,
    SourceCount,
    Stats,
    Threat,
    ThreatPage,
    TrendPoint,
)
from resolvers.records import IndicatorKind, Severity

EXAMPLES = settings(max_examples=200, deadline=None, database=None)


def field_type(name: str) -> Any:
    """The Strawberry type of a field of Query, by its GraphQL name."""
    field = schema.get_field_for_type(name, "Query")
    assert field is not None, name
    return field.type


def round_trip(name: str, value: Any) -> Any:
    """Store `value` as the cache layer does and read it back for the field `name`."""
    raw = encode({"t": 1_773_500_966.123, "g": ["0123456789abcdef"], "v": value})
    return decoder_for(field_type(name))(orjson.loads(raw)["v"])


def assert_same(decoded: Any, original: Any, path: str = "value") -> None:
    """Equal, and of exactly the same types all the way down (not merely ==)."""
    assert type(decoded) is type(original), f"{path}: {type(decoded)} != {type(original)}"
    if isinstance(original, enum.Enum):
        assert decoded is original, path
    elif isinstance(original, dt.datetime):
        assert decoded == original, path
        assert (decoded.tzinfo is None) == (original.tzinfo is None), path
        assert decoded.utcoffset() == original.utcoffset(), path
        assert decoded.microsecond == original.microsecond, path
    elif isinstance(original, list):
        assert len(decoded) == len(original), path
        for i, (d, o) in enumerate(zip(decoded, original, strict=True)):
            assert_same(d, o, f"{path}[{i}]")
    elif dataclasses.is_dataclass(original):
        for f in dataclasses.fields(original):
            assert_same(getattr(decoded, f.name), getattr(original, f.name), f"{path}.{f.name}")
    else:
        assert decoded == original, path
    assert decoded == original, path


# -- strategies building real Strawberry instances ------------------------------------------

texts = st.text(max_size=40)  # arbitrary unicode (hypothesis leaves out lone surrogates)
counts = st.integers(min_value=-(2**31), max_value=2**31 - 1)  # GraphQL Int
utc_datetimes = st.datetimes(timezones=st.just(dt.UTC))  # aware, with microseconds
ids = st.from_regex(r"[1-9][0-9]{0,17}", fullmatch=True).map(strawberry.ID)

indicators = st.builds(Indicator, kind=st.sampled_from(IndicatorKind), value=texts)
threat_objects = st.builds(
    Threat,
    id=ids,
    source=texts,
    external_id=texts,
    title=st.text(),
    description=st.none() | st.text(),
    severity=st.sampled_from(Severity),
    category=texts,
    tags=st.lists(texts, max_size=5),
    indicators=st.lists(indicators, max_size=4),
    url=st.none() | texts,
    published_at=utc_datetimes,
    ingested_at=utc_datetimes,
)
threat_pages = st.builds(
    ThreatPage,
    items=st.lists(threat_objects, max_size=5),
    total=counts,
    page=counts,
    limit=counts,
    has_next_page=st.booleans(),
)
stats_objects = st.builds(
    Stats,
    total_threats=counts,
    critical=counts,
    high=counts,
    medium=counts,
    low=counts,
    info=counts,
    last24h=counts,
    sources=counts,
    last_ingested_at=st.none() | utc_datetimes,
)
trends = st.lists(st.builds(TrendPoint, date=st.dates(), count=counts), max_size=31)
severity_breakdowns = st.lists(
    st.builds(SeverityCount, severity=st.sampled_from(Severity), count=counts), max_size=5
)
source_breakdowns = st.lists(st.builds(SourceCount, source=texts, count=counts), max_size=10)

VALUES: dict[str, st.SearchStrategy[Any]] = {
    "stats": stats_objects,
    "threats": threat_pages,
    "threat": st.none() | threat_objects,
    "trend": trends,
    "severityBreakdown": severity_breakdowns,
    "sourceBreakdown": source_breakdowns,
}


def test_every_cached_field_of_the_schema_has_a_round_trip_test() -> None:
    query = schema.get_type_by_name("Query")
    assert query is not None
    cached = {
        schema.config.name_converter.get_graphql_name(f)
        for f in query.fields
        if any(isinstance(e, CachedField) for e in f.extensions)
    }
    assert cached == set(VALUES)


def test_the_field_types_are_the_wrapped_strawberry_types() -> None:
    assert field_type("stats") is Stats
    assert field_type("threats") is ThreatPage
    assert isinstance(field_type("threat"), StrawberryOptional)
    assert field_type("threat").of_type is Threat
    for name, item in (
        ("trend", TrendPoint),
        ("severityBreakdown", SeverityCount),
        ("sourceBreakdown", SourceCount),
    ):
        assert isinstance(field_type(name), StrawberryList)
        assert field_type(name).of_type is item


@pytest.mark.parametrize("name", sorted(VALUES))
@EXAMPLES
@given(data=st.data())
def test_every_cached_field_round_trips_to_the_same_typed_value(
    name: str, data: st.DataObject
) -> None:
    value = data.draw(VALUES[name], label=name)
    assert_same(round_trip(name, value), value)


@EXAMPLES
@given(threat=threat_objects)
def test_a_threat_comes_back_with_enums_aware_datetimes_and_nested_indicators(
    threat: Threat,
) -> None:
    decoded = round_trip("threat", threat)
    assert isinstance(decoded, Threat)
    assert decoded.severity in Severity
    assert decoded.severity is threat.severity
    assert decoded.published_at.tzinfo is not None
    assert decoded.published_at.utcoffset() == dt.timedelta(0)
    assert decoded.ingested_at == threat.ingested_at
    assert all(type(i) is Indicator and i.kind in IndicatorKind for i in decoded.indicators)
    assert decoded.description == threat.description
    assert type(decoded.id) is str
    assert decoded.id == threat.id


@pytest.mark.parametrize("name", ["threat"])
def test_none_round_trips_for_a_nullable_field(name: str) -> None:
    assert round_trip(name, None) is None


@pytest.mark.parametrize("name", ["trend", "severityBreakdown", "sourceBreakdown"])
def test_empty_lists_round_trip(name: str) -> None:
    decoded = round_trip(name, [])
    assert decoded == []
    assert type(decoded) is list


def test_an_empty_page_and_empty_nested_lists_round_trip() -> None:
    page = ThreatPage(items=[], total=0, page=1, limit=10, has_next_page=False)
    assert_same(round_trip("threats", page), page)
    bare = Threat(
        id=strawberry.ID("1"),
        source="",
        external_id="",
        title="",
        description=None,
        severity=Severity.INFO,
        category="",
        tags=[],
        indicators=[],
        url=None,
        published_at=dt.datetime(1, 1, 1, tzinfo=dt.UTC),
        ingested_at=dt.datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=dt.UTC),
    )
    assert_same(round_trip("threat", bare), bare)


def test_stats_without_a_last_ingest_round_trip() -> None:
    stats = Stats(
        total_threats=0,
        critical=0,
        high=0,
        medium=0,
        low=0,
        info=0,
        last24h=0,
        sources=0,
        last_ingested_at=None,
    )
    assert_same(round_trip("stats", stats), stats)


def test_naive_and_aware_datetimes_are_kept_as_they_were_given() -> None:
    """Documented behaviour: the codec converts nothing. Aware UTC comes back aware UTC; any
    other offset comes back as the same instant with the same fixed offset (a zoneinfo zone
    becomes a fixed offset); a naive datetime comes back naive, never assumed to be UTC.
    (The DateTime scalar treats naive as UTC when the answer is serialized.)"""
    decode = decoder_for(dt.datetime)

    def back(value: dt.datetime) -> dt.datetime:
        result: dt.datetime = decode(orjson.loads(encode(value)))
        return result

    aware = dt.datetime(2026, 3, 14, 15, 9, 26, 535_897, tzinfo=dt.UTC)
    assert back(aware) == aware
    assert back(aware).utcoffset() == dt.timedelta(0)

    india = dt.datetime(2026, 3, 14, 20, 39, 26, 1, tzinfo=dt.timezone(dt.timedelta(hours=5.5)))
    assert back(india) == india
    assert back(india).utcoffset() == dt.timedelta(hours=5, minutes=30)

    paris = dt.datetime(2026, 7, 1, 12, tzinfo=ZoneInfo("Europe/Paris"))
    assert back(paris) == paris  # same instant
    assert back(paris).tzinfo == dt.timezone(dt.timedelta(hours=2))  # fixed offset now

    naive = dt.datetime(2026, 3, 14, 15, 9, 26, 535_897)
    assert back(naive) == naive
    assert back(naive).tzinfo is None
    assert back(naive) != aware  # Python never equates a naive and an aware datetime


def test_dates_round_trip_as_dates_not_datetimes() -> None:
    point = TrendPoint(date=dt.date(2026, 2, 28), count=3)
    decoded = round_trip("trend", [point])
    assert type(decoded[0].date) is dt.date
    assert_same(decoded, [point])


@strawberry.type
class _Other:
    name: str


@strawberry.type
class _WithUnion:
    either: Threat | _Other


@dataclasses.dataclass
class _PlainDataclass:
    name: str


@pytest.mark.parametrize(
    "tp",
    [
        bytes,
        dict,
        object,
        decimal.Decimal,
        set,
        _PlainDataclass,
        StrawberryList(of_type=bytes),
        StrawberryOptional(of_type=dict),
        field_type("threat").of_type | _Other,  # a union: not decodable without a tag
        _WithUnion,  # an object type with an undecodable field fails when built, not later
    ],
    ids=repr,
)
def test_a_decoder_for_an_unsupported_type_raises_cache_error(tp: Any) -> None:
    with pytest.raises(CacheError, match="cannot decode"):
        decoder_for(tp)
