"""CSV import parsing: format detection by header, field mapping and per-row errors (no database)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import ValidationFailed
from engine.links.importers import detect_format, normalize_header, parse_csv

DATA = Path(__file__).resolve().parent.parent / "data" / "imports"


def _read(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("header", "fmt"),
    [
        (["createdAt", "domain", "shortCode", "shortUrl", "longUrl", "title", "tags", "visits"], "shlink"),
        (["address", "target", "description", "link", "visit_count"], "kutt"),
        (["keyword", "url", "title", "timestamp", "ip", "clicks"], "yourls"),
        (["Title", "Long URL", "Link", "Created At"], "bitly"),
        (["bitlink", "long_url"], "bitly"),
        (["url", "short_code", "title", "tags"], "plain"),
        (["\ufeffURL"], "plain"),
    ],
)
def test_detect_format_by_header(header: list[str], fmt: str) -> None:
    assert detect_format(header) == fmt


def test_unknown_header_is_rejected_naming_file() -> None:
    with pytest.raises(ValidationFailed) as exc:
        parse_csv("destination,name\nhttps://a.example,x\n")
    assert exc.value.field == "file"


def test_normalize_header() -> None:
    assert (
        normalize_header(" Long URL ")
        == normalize_header("long_url")
        == normalize_header("longUrl")
        == "longurl"
    )


def test_bitly_export() -> None:
    parsed = parse_csv(_read("bitly.csv"))
    assert parsed.format == "bitly"
    assert [(r.short_code, r.url, r.title, r.tags) for r in parsed.rows] == [
        ("sprng24", "https://shop.example.com/spring?ref=bitly", "Spring sale", ("sale", "spring")),
        ("guide-x", "https://docs.example.com/guide", None, ()),
    ]
    assert [(e.row, e.field) for e in parsed.errors] == [(4, "url")]


def test_shlink_export() -> None:
    parsed = parse_csv(_read("shlink.csv"))
    assert parsed.format == "shlink"
    assert [(r.short_code, r.title, r.tags) for r in parsed.rows] == [
        ("shl-one", "First post", ("blog", "news")),
        ("shl-two", None, ("blog",)),
    ]
    assert [(e.row, e.field) for e in parsed.errors] == [(4, "short_code")]


def test_kutt_export() -> None:
    parsed = parse_csv(_read("kutt.csv"))
    assert parsed.format == "kutt"
    assert [(r.short_code, r.url, r.title) for r in parsed.rows] == [
        ("kutt-a", "https://kutt.example.org/a", "Kutt link A"),
        ("kutt-b", "https://kutt.example.org/b", None),
    ]
    assert parsed.errors == []


def test_yourls_export() -> None:
    parsed = parse_csv(_read("yourls.csv"))
    assert parsed.format == "yourls"
    assert [r.short_code for r in parsed.rows] == ["yrl1", "yrl3"]
    assert [(e.row, e.field) for e in parsed.errors] == [(3, "url")]


def test_plain_csv_reports_duplicate_codes_and_accepts_missing_code() -> None:
    parsed = parse_csv(_read("plain.csv"))
    assert parsed.format == "plain"
    assert [(r.short_code, r.tags) for r in parsed.rows] == [
        ("plain-a", ("alpha", "beta")),
        (None, ("alpha",)),
    ]
    assert [(e.row, e.field) for e in parsed.errors] == [(4, "short_code")]
    assert "row 2" in parsed.errors[0].message


def test_forced_format_must_have_its_columns() -> None:
    with pytest.raises(ValidationFailed) as exc:
        parse_csv(_read("plain.csv"), "yourls")
    assert exc.value.field == "file" and "keyword" in exc.value.message


def test_blocked_hosts_and_bad_tags_are_row_errors() -> None:
    text = (
        "url,short_code,title,tags\nhttps://evil.example/x,ok-1,,\nhttps://fine.example,ok-2,,"
        + "t" * 51
        + "\n"
    )
    parsed = parse_csv(text, blocked_hosts=["evil.example"])
    assert parsed.rows == []
    assert [(e.row, e.field) for e in parsed.errors] == [(2, "url"), (3, "tags[0]")]


def test_row_numbers_count_physical_lines_with_quoted_newlines() -> None:
    text = 'url,short_code,title,tags\nhttps://a.example,aa,"two\nlines",\nnot-a-url,bb,,\n'
    parsed = parse_csv(text)
    assert [r.title for r in parsed.rows] == ["two\nlines"]
    assert [(e.row, e.field) for e in parsed.errors] == [(4, "url")]
