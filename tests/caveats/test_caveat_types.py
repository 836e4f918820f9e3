"""Caveat parameter types: parsing type names, converting JSON values, `in_cidr`."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone

import celpy.celtypes as ct
import pytest

from stonetown.engine.caveat_values import (
    CaveatType,
    IPAddressValue,
    convert_value,
    parse_duration,
    parse_timestamp,
    parse_type,
)


def test_parse_type_basic_and_generic() -> None:
    assert parse_type("int") == CaveatType("int")
    assert parse_type("list<string>") == CaveatType("list", CaveatType("string"))
    assert parse_type("map< list<int> >") == CaveatType("map", CaveatType("list", CaveatType("int")))
    assert str(parse_type("map<list<int>>")) == "map<list<int>>"


@pytest.mark.parametrize("text", ["integer", "list", "list<>", "int<string>", "map<nope>", "List<int>"])
def test_parse_type_rejects_unknown(text: str) -> None:
    with pytest.raises(ValueError, match="unknown caveat parameter type"):
        parse_type(text)


def test_int_accepts_integral_numbers_and_numeric_strings() -> None:
    assert convert_value(42, parse_type("int")) == ct.IntType(42)
    assert convert_value(42.0, parse_type("int")) == ct.IntType(42)
    assert convert_value("-7", parse_type("int")) == ct.IntType(-7)
    assert isinstance(convert_value(3, parse_type("uint")), ct.IntType)


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (4.5, "int"),
        (True, "int"),
        ("x", "int"),
        (None, "int"),
        (-1, "uint"),
        (2**63, "int"),
        ("1e999", "double"),
    ],
)
def test_numbers_reject_wrong_values(value: object, kind: str) -> None:
    with pytest.raises(ValueError):
        convert_value(value, parse_type(kind))


def test_double_bool_string_bytes() -> None:
    assert convert_value(2, parse_type("double")) == ct.DoubleType(2.0)
    assert convert_value(True, parse_type("bool")) == ct.BoolType(True)
    assert convert_value("hi", parse_type("string")) == ct.StringType("hi")
    encoded = base64.b64encode(b"\x00\x01").decode()
    assert convert_value(encoded, parse_type("bytes")) == ct.BytesType(b"\x00\x01")
    for value, kind in [(1, "bool"), (5, "string"), ("not base64!", "bytes"), ("yes", "bool")]:
        with pytest.raises(ValueError):
            convert_value(value, parse_type(kind))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("10s", timedelta(seconds=10)),
        ("-1.5h", timedelta(hours=-1.5)),
        ("300ms", timedelta(milliseconds=300)),
        ("1us", timedelta(microseconds=1)),
        ("0", timedelta(0)),
        ("2h45m3s", timedelta(hours=2, minutes=45, seconds=3)),
    ],
)
def test_durations_in_go_syntax(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected
    converted = convert_value(text, parse_type("duration"))
    assert isinstance(converted, ct.DurationType) and converted == expected


@pytest.mark.parametrize("text", ["", "10", "1d", "h", "1h 30m", "abc", "1.h.5"])
def test_durations_rejected(text: str) -> None:
    with pytest.raises(ValueError):
        convert_value(text, parse_type("duration"))


def test_timestamps_rfc3339() -> None:
    assert parse_timestamp("2024-01-01T00:00:00Z") == datetime(2024, 1, 1, tzinfo=UTC)
    offset = parse_timestamp("2024-10-03T07:16:28.068632-07:00")
    assert offset == datetime(2024, 10, 3, 14, 16, 28, 68632, tzinfo=UTC)
    assert offset.utcoffset() == timedelta(hours=-7)
    nanos = parse_timestamp("2024-01-01T00:00:00.123456789+01:00")
    assert nanos == datetime(2024, 1, 1, 0, 0, 0, 123456, tzinfo=timezone(timedelta(hours=1)))
    assert isinstance(convert_value("2024-01-01T00:00:00Z", parse_type("timestamp")), ct.TimestampType)


@pytest.mark.parametrize("text", ["2024-01-01", "2024-01-01T00:00:00", "yesterday", "2024-13-01T00:00:00Z"])
def test_timestamps_rejected(text: str) -> None:
    with pytest.raises(ValueError):
        convert_value(text, parse_type("timestamp"))


def test_lists_and_maps_convert_their_elements() -> None:
    converted = convert_value([1, 2], parse_type("list<int>"))
    assert converted == ct.ListType([ct.IntType(1), ct.IntType(2)])
    nested = convert_value({"a": ["x"]}, parse_type("map<list<string>>"))
    assert nested == ct.MapType({ct.StringType("a"): ct.ListType([ct.StringType("x")])})
    with pytest.raises(ValueError, match="item 1"):
        convert_value([1, "two"], parse_type("list<int>"))
    with pytest.raises(ValueError, match="key `b`"):
        convert_value({"a": 1, "b": "x"}, parse_type("map<int>"))
    with pytest.raises(ValueError):
        convert_value({"a": 1}, parse_type("list<int>"))


def test_any_keeps_json_shapes() -> None:
    converted = convert_value({"n": 1, "f": 1.5, "s": "x", "l": [True, None]}, parse_type("any"))
    assert converted == ct.MapType(
        {
            ct.StringType("n"): ct.IntType(1),
            ct.StringType("f"): ct.DoubleType(1.5),
            ct.StringType("s"): ct.StringType("x"),
            ct.StringType("l"): ct.ListType([ct.BoolType(True), None]),
        }
    )


def test_ipaddress_values() -> None:
    v4 = convert_value("10.1.2.3", parse_type("ipaddress"))
    v6 = convert_value("2001:db8::1", parse_type("ipaddress"))
    assert isinstance(v4, IPAddressValue) and isinstance(v6, IPAddressValue)
    assert v4 == convert_value("10.1.2.3", parse_type("ipaddress")) and v4 != v6
    for bad in ["10.1.2", "10.0.0.0/8", 167837955, "host"]:
        with pytest.raises(ValueError):
            convert_value(bad, parse_type("ipaddress"))
