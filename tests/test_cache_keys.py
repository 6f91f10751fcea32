"""Cache keys: canonical arguments, bounded length, private identities, versions and globs."""

from __future__ import annotations

import datetime as dt
import fnmatch
import re
from typing import Any

import fakeredis
import orjson
import pytest
import strawberry
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from strawberry import UNSET
from strawberry.extensions import FieldExtension

from cache.keys import MAX_ARGS_LENGTH, KeySpace, canonical_args, fingerprint
from graph.types import ThreatFilter
from resolvers.records import Severity

EXAMPLES = settings(max_examples=200, deadline=None, database=None)
BOUND = 300  # no key may be longer, whatever the input
KEYS = KeySpace("vajra", fingerprint("schema"))
NOW = dt.datetime(2026, 3, 14, 15, 9, 26, tzinfo=dt.UTC)
FILTER_FIELDS = ("severity", "source", "category", "search", "since")

ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)  # what orjson can encode
scalars = st.none() | ints | st.text(max_size=20)
arg_dicts = st.dictionaries(st.text(max_size=8), scalars, max_size=6)
filter_values: dict[str, st.SearchStrategy[Any]] = {
    "severity": st.none() | st.lists(st.sampled_from(Severity), max_size=3),
    "source": st.none() | st.text(max_size=10),
    "category": st.none() | st.text(max_size=10),
    "search": st.none() | st.text(max_size=10),
    "since": st.none() | st.datetimes(timezones=st.just(dt.UTC)),
}


def entry(keys: KeySpace = KEYS, args: dict[str, Any] | None = None, **options: Any) -> str:
    return keys.entry("threats", "Query.threats", canonical_args(args or {}), **options)


# -- what Strawberry hands a resolver (and so the cache extension) ------------------------

_seen: list[dict[str, Any]] = []


class _Record(FieldExtension):
    def resolve(self, next_: Any, source: Any, info: Any, **kwargs: Any) -> Any:
        _seen.append(kwargs)
        return next_(source, info, **kwargs)


@strawberry.type
class _Query:
    # The signature of Query.threats, with its real input type.
    @strawberry.field(extensions=[_Record()])
    def threats(self, page: int = 1, limit: int = 10, filter: ThreatFilter | None = None) -> int:
        return page


_mini = strawberry.Schema(query=_Query)


def strawberry_kwargs(query: str) -> dict[str, Any]:
    _seen.clear()
    result = _mini.execute_sync(query)
    assert result.errors is None, result.errors
    assert len(_seen) == 1
    return _seen[0]


# -- tests ----------------------------------------------------------------------------------


@EXAMPLES
@given(args=arg_dicts, data=st.data())
def test_argument_order_never_changes_the_key(args: dict[str, Any], data: st.DataObject) -> None:
    shuffled = dict(data.draw(st.permutations(list(args.items()))))
    assert canonical_args(shuffled) == canonical_args(args)
    assert entry(args=shuffled) == entry(args=args)


def test_omitted_and_default_arguments_share_a_key() -> None:
    # At the canonical_args level: equal kwargs dicts after defaults give one string.
    explicit = {"page": 1, "limit": 10, "filter": None}
    assert canonical_args(explicit) == canonical_args({"filter": None, "limit": 10, "page": 1})
    assert canonical_args(explicit) == canonical_args(dict(explicit))
    # And that is what Strawberry passes: defaults applied, omitted arguments present.
    omitted = strawberry_kwargs("{ threats }")
    assert omitted == explicit
    keys = {
        canonical_args(strawberry_kwargs(q))
        for q in (
            "{ threats }",
            "{ threats(page: 1) }",
            "{ threats(limit: 10) }",
            "{ threats(page: 1, limit: 10, filter: null) }",
        )
    }
    assert keys == {canonical_args(explicit)}
    # Omitted fields of an input object take their default (None) too.
    assert canonical_args(strawberry_kwargs('{ threats(filter: {source: "nvd"}) }')) == (
        canonical_args(
            strawberry_kwargs('{ threats(filter: {source: "nvd", search: null, category: null}) }')
        )
    )
    # A value that is not the default is a different key.
    assert canonical_args(strawberry_kwargs("{ threats(page: 2) }")) != canonical_args(explicit)


def test_none_and_empty_string_never_collide() -> None:
    assert canonical_args({"search": None}) != canonical_args({"search": ""})
    assert canonical_args({"search": None}) != canonical_args({"search": "null"})
    assert canonical_args({"search": ""}) != canonical_args({"search": '""'})
    assert canonical_args({"search": None}) != canonical_args({})
    assert canonical_args({"search": ""}) != canonical_args({})
    assert canonical_args({"page": 1, "search": None}) != canonical_args({"page": 1})
    assert canonical_args({"id": "1"}) != canonical_args({"id": 1})
    # Inside input objects.
    assert canonical_args({"filter": ThreatFilter(search=None)}) != canonical_args(
        {"filter": ThreatFilter(search="")}
    )
    assert canonical_args({"filter": None}) != canonical_args({"filter": ThreatFilter()})
    # And once the encoding is long enough to be hashed.
    long = "x" * (2 * MAX_ARGS_LENGTH)
    hashed_none = canonical_args({"search": long, "source": None})
    hashed_empty = canonical_args({"search": long, "source": ""})
    assert hashed_none.startswith("#")
    assert hashed_empty.startswith("#")
    assert hashed_none != hashed_empty
    assert entry(args={"search": None}) != entry(args={"search": ""})


@EXAMPLES
@given(data=st.data())
def test_nested_input_objects_are_canonical(data: st.DataObject) -> None:
    chosen = data.draw(st.lists(st.sampled_from(FILTER_FIELDS), unique=True), label="fields")
    values = {name: data.draw(filter_values[name], label=name) for name in chosen}
    order = data.draw(st.permutations(chosen), label="order")
    one = ThreatFilter(**values)
    two = ThreatFilter(**{name: values[name] for name in order})
    assert canonical_args({"filter": one, "page": 1}) == canonical_args({"page": 1, "filter": two})
    # Fields left UNSET (absent from the request) are omitted, not encoded as null.
    unset = {name: UNSET for name in FILTER_FIELDS if name not in values}
    partial = canonical_args({"filter": ThreatFilter(**values, **unset)})
    if not partial.startswith("#"):
        assert set(orjson.loads(partial)["filter"]) == set(values)
    assert canonical_args({"filter": ThreatFilter(**values, **unset)}) == partial


def test_input_objects_encode_as_sorted_plain_json() -> None:
    where = ThreatFilter(source="nvd", severity=[Severity.HIGH, Severity.LOW])
    assert canonical_args({"page": 1, "filter": where}) == (
        '{"filter":{"category":null,"search":null,"severity":["HIGH","LOW"],'
        '"since":null,"source":"nvd"},"page":1}'
    )
    assert canonical_args({"since": NOW}) == '{"since":"2026-03-14T15:09:26+00:00"}'
    assert canonical_args({"filter": ThreatFilter(**dict.fromkeys(FILTER_FIELDS, UNSET))}) == (
        '{"filter":{}}'
    )
    # The same instant in another offset is the same key: datetimes are encoded in UTC.
    india = NOW.astimezone(dt.timezone(dt.timedelta(hours=5, minutes=30)))
    assert canonical_args({"since": india}) == canonical_args({"since": NOW})
    assert canonical_args({"since": NOW + dt.timedelta(microseconds=1)}) != canonical_args(
        {"since": NOW}
    )


def test_long_arguments_are_hashed_and_bounded() -> None:
    megabyte = "a" * 1_000_000
    args = {"page": 1, "limit": 10, "filter": ThreatFilter(search=megabyte)}
    encoded = canonical_args(args)
    assert re.fullmatch(r"#[0-9a-f]{32}", encoded)
    assert canonical_args({**args, "filter": ThreatFilter(search=megabyte + "b")}) != encoded
    key = KeySpace("a" * 32, fingerprint("schema")).entry(
        "threats", "Query.threats", encoded, bucket="2026-03-14", identity=megabyte
    )
    assert len(key) < BOUND
    lease = KEYS.lease(key, (b"0" * 16,) * 8)
    assert re.fullmatch(re.escape(key) + r":lease:[0-9a-f]{12}", lease)
    assert len(lease) < BOUND
    assert KEYS.lease(key, (b"1" * 16,) * 8) != lease
    assert len(KEYS.generation("threat:source=" + megabyte)) < BOUND
    # The boundary: up to MAX_ARGS_LENGTH characters stay readable, one more is hashed.
    overhead = len(canonical_args({"s": ""}))
    at_limit = {"s": "x" * (MAX_ARGS_LENGTH - overhead)}
    assert canonical_args(at_limit) == '{"s":"' + at_limit["s"] + '"}'
    assert len(canonical_args(at_limit)) == MAX_ARGS_LENGTH
    assert canonical_args({"s": "x" * (MAX_ARGS_LENGTH - overhead + 1)}).startswith("#")


@EXAMPLES
@given(
    args=st.dictionaries(
        st.text(max_size=50), st.none() | ints | st.text(max_size=2000), max_size=5
    ),
    identity=st.none() | st.text(max_size=2000),
)
def test_every_key_stays_under_a_fixed_bound(args: dict[str, Any], identity: str | None) -> None:
    encoded = canonical_args(args)
    assert len(encoded) <= MAX_ARGS_LENGTH
    key = KEYS.entry("threats", "Query.threats", encoded, bucket="2026-03-14", identity=identity)
    assert len(key) < BOUND


@EXAMPLES
@given(
    pair=st.tuples(arg_dicts, arg_dicts)
    | arg_dicts.flatmap(
        # Near misses: the same arguments with one value swapped for a look-alike.
        lambda a: st.tuples(
            st.just(a),
            st.sampled_from(sorted(a) or [""]).flatmap(
                lambda k: st.sampled_from([None, "", "null", 0, "0", '""', "None", "-"]).map(
                    lambda v: {**a, k: v}
                )
            ),
        )
    ),
    padding=st.sampled_from(["", "p" * MAX_ARGS_LENGTH]),  # also through the hashed form
)
def test_different_arguments_give_different_keys(
    pair: tuple[dict[str, Any], dict[str, Any]], padding: str
) -> None:
    one, two = pair
    if padding:
        one, two = {**one, "\0pad": padding}, {**two, "\0pad": padding}
    assume(one != two)
    assert canonical_args(one) != canonical_args(two)
    assert entry(args=one) != entry(args=two)


@EXAMPLES
@given(identities=st.lists(st.text(max_size=64), min_size=2, max_size=2, unique=True))
def test_private_identity_changes_the_key_and_is_not_stored_in_clear(
    identities: list[str],
) -> None:
    alice, bob = identities
    args = {"page": 1}
    public = entry(args=args)
    private = entry(args=args, identity=alice)
    assert private != public
    assert private != entry(args=args, identity=bob)
    # The identity is appended as a fixed-length hash, nothing else of it.
    assert private.startswith(public + ":u:")
    assert re.fullmatch(r"[0-9a-f]{16}", private.removeprefix(public + ":u:"))
    assert entry(args=args, identity=alice) == private  # stable


def test_a_readable_identity_never_appears_in_keys() -> None:
    identity = "Bearer alice@example.com"
    key = entry(args={"page": 1}, bucket="2026-03-14", identity=identity)
    for part in (identity, "alice", "example.com"):
        assert part not in key
        assert part not in KEYS.lease(key, (b"g1",))
    assert entry(args={"page": 1}, identity="") != entry(args={"page": 1})


def test_schema_version_is_part_of_entry_keys() -> None:
    old, new = KeySpace("vajra", fingerprint("type Query")), KeySpace("vajra", fingerprint("x"))
    assert old.version != new.version
    args = {"page": 1}
    assert entry(old, args) != entry(new, args)
    assert old.version in entry(old, args)
    assert new.version not in entry(old, args)
    assert entry(old, args, identity="alice") != entry(new, args, identity="alice")
    assert old.lease(entry(old, args), (b"g",)) != new.lease(entry(new, args), (b"g",))
    # A clear reaches the entries of every schema version of the namespace.
    for keys in (old, new):
        assert _matches(entry(keys, args), old.entries_of("threats"))
        assert _matches(entry(keys, args), new.entries_of())
    assert not _matches(entry(KeySpace("other", old.version), args), old.entries_of())


def _as_fnmatch(redis_glob: str) -> str:
    r"""A Redis glob as an fnmatch pattern. Redis escapes with a backslash (`\*` is a literal
    star); fnmatch has no escape character, so `\c` becomes the one-character class `[c]`."""
    return re.sub(r"\\(.)", lambda m: f"[{m.group(1)}]", redis_glob, flags=re.DOTALL)


def _matches(key: str, redis_glob: str) -> bool:
    return fnmatch.fnmatchcase(key, _as_fnmatch(redis_glob))


@pytest.mark.parametrize(
    ("namespace", "lookalikes"),
    [
        ("a*b", ["ab", "aXYb", "a**b", "a\\*b"]),
        ("a[bc]", ["ab", "ac", "a[b]", "a\\[bc\\]"]),
        ("v?", ["va", "v", "v??"]),
        ("x]y", ["xy", "x\\]y"]),
        ("back\\slash", ["backslash", "back\\\\slash"]),
        ("*", ["vajra", "", "**"]),
        ("[!a]", ["b", "[a]", "!"]),
    ],
)
def test_glob_characters_in_names_are_literal_in_patterns(
    namespace: str, lookalikes: list[str]
) -> None:
    keys = KeySpace(namespace, "v1")
    own = [
        keys.entry("threats", "Query.threats", "-"),
        KeySpace(namespace, "v0").entry("threats", "Query.threat", '{"id":"1"}', identity="a"),
        keys.entry("charts", "Query.trend", '{"days":10}', bucket="2026-03-14"),
    ]
    others = [KeySpace(name, "v1").entry("threats", "Query.threats", "-") for name in lookalikes]
    everything, threats = keys.entries_of(), keys.entries_of("threats")
    assert [_matches(k, everything) for k in own] == [True, True, True]
    assert [_matches(k, threats) for k in own] == [True, True, False]
    assert not any(_matches(k, p) for k in others for p in (everything, threats))
    assert not _matches(keys.generation("threat:any"), everything)
    # The same verdicts from Redis's own glob (as implemented by fakeredis's SCAN MATCH).
    redis = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    for key in own + others:
        redis.set(key, b"1")
    assert {k.decode() for k in redis.scan_iter(match=everything)} == set(own)
    assert {k.decode() for k in redis.scan_iter(match=threats)} == set(own[:2])
    redis.close()


@EXAMPLES
@given(tag=st.text(max_size=300), namespace=st.sampled_from(["vajra", "other"]))
def test_generation_keys_do_not_depend_on_the_schema_version(tag: str, namespace: str) -> None:
    versions = [KeySpace(namespace, v) for v in ("1", "2", fingerprint("schema"))]
    generations = {keys.generation(tag) for keys in versions}
    assert len(generations) == 1
    key = generations.pop()
    if len(tag) <= MAX_ARGS_LENGTH:
        assert key == f"{namespace}:g:{{{namespace}}}:{tag}"
    else:
        assert re.fullmatch(rf"{namespace}:g:\{{{namespace}\}}:#[0-9a-f]{{32}}", key)
    assert len(key) < BOUND
    assert KeySpace("elsewhere", "1").generation(tag) != key
    assert KEYS.generation(tag + "x") != KEYS.generation(tag)
