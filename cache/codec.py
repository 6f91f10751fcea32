"""Values to bytes and back with orjson, never pickle.

Encoding is orjson's own (Strawberry types are dataclasses; enums, datetimes and dates are
native). Decoding is driven by the field's Strawberry type, so a cached value comes back as
the same typed result: the same classes, enums, aware datetimes, nested lists and `None`.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable
from typing import Any, cast

import orjson
from strawberry.types.base import StrawberryList, StrawberryOptional, has_object_definition
from strawberry.types.enum import StrawberryEnumDefinition
from strawberry.types.scalar import ScalarDefinition, ScalarWrapper

from cache.exceptions import CacheError

Decoder = Callable[[Any], Any]


def encode(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_PASSTHROUGH_SUBCLASS)


def _identity(value: Any) -> Any:
    return value


def _optional(inner: Decoder) -> Decoder:
    return lambda value: None if value is None else inner(value)


def _list(inner: Decoder) -> Decoder:
    if inner is _identity:
        return _identity  # orjson already gives a fresh list
    return lambda value: [inner(item) for item in value]


_objects: dict[type[Any], Decoder] = {}


def _object(cls: type[Any]) -> Decoder:
    # Hot path: build the instance without __init__, converting only the fields that need
    # it (enums, datetimes, nested objects); strings and numbers pass through untouched.
    known = _objects.get(cls)
    if known is not None:  # built already, or being built: a self-referencing type
        return known
    definition = cls.__strawberry_definition__
    names = [f.python_name for f in definition.fields if f.base_resolver is None]
    plain = any("__slots__" in vars(base) for base in cls.__mro__ if base is not object)
    converted: list[tuple[str, Decoder]] = []

    def decode(value: dict[str, Any]) -> Any:
        if len(value) != len(names):
            value = {name: value[name] for name in names}
        for name, convert in converted:
            value[name] = convert(value[name])
        if plain:  # slotted classes have no __dict__ to fill
            return cls(**value)
        instance = object.__new__(cls)
        instance.__dict__ = value
        return instance

    _objects[cls] = decode
    try:
        for f in definition.fields:
            if f.base_resolver is None and (convert := decoder_for(f.type)) is not _identity:
                converted.append((f.python_name, convert))
    except BaseException:
        del _objects[cls]
        raise
    return decode


def _enum(cls: type[enum.Enum]) -> Decoder:
    return {member.value: member for member in cls}.__getitem__


def decoder_for(tp: Any) -> Decoder:
    """A function turning the JSON form of a value of Strawberry type `tp` back into it."""
    if isinstance(tp, StrawberryOptional):
        return _optional(decoder_for(tp.of_type))
    if isinstance(tp, StrawberryList):
        return _list(decoder_for(tp.of_type))
    if isinstance(tp, StrawberryEnumDefinition):
        return _enum(cast(type[enum.Enum], tp.wrapped_cls))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _enum(tp)
    if tp is dt.datetime:
        return dt.datetime.fromisoformat
    if tp is dt.date:
        return dt.date.fromisoformat
    if has_object_definition(tp):
        return _object(tp)
    if tp in (str, int, float, bool) or isinstance(tp, ScalarDefinition | ScalarWrapper):
        return _identity
    if getattr(tp, "__supertype__", None) in (str, int):  # NewType scalars such as ID
        return _identity
    raise CacheError(f"the cache cannot decode values of type {tp!r}")
