"""CSV import parsing: format detection by header, field mapping and per-row errors (no database)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.errors import ValidationFailed
from engine.links.importers import detect_format, normalize_header, parse_clicks, parse_created_at, parse_csv

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


def _utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("bitly.csv", {"sprng24": (_utc(2024, 3, 1, 10), 1204), "guide-x": (_utc(2024, 3, 2, 11), 0)}),
        (
            "shlink.csv",
            {"shl-one": (_utc(2024, 1, 5, 9, 30), 12), "shl-two": (_utc(2024, 1, 6, 9, 30), 3)},
        ),
        ("kutt.csv", {"kutt-a": (_utc(2024, 2, 1), 5), "kutt-b": (_utc(2024, 2, 2), 0)}),
        ("yourls.csv", {"yrl1": (_utc(2023, 12, 1, 8), 42), "yrl3": (_utc(2023, 12, 3, 8), 7)}),
    ],
)
def test_exports_carry_creation_dates_and_click_counts(name: str, expected: dict) -> None:
    parsed = parse_csv(_read(name))
    assert {r.short_code: (r.created_at, r.clicks) for r in parsed.rows} == expected


@pytest.mark.parametrize(
    ("header", "row"),
    [
        ("dateCreated,shortCode,longUrl,visitsCount", "2024-05-06T07:08:09+02:00,s-1,https://a.example,9"),
        (
            "short_code,long_url,date_created,visits_summary_total",
            "s-1,https://a.example,2024-05-06T05:08:09Z,9",
        ),
        ("address,target,created_at,visits", "s-1,https://a.example,2024-05-06 05:08:09,9"),
        ("keyword,url,timestamp,clicks", "s-1,https://a.example,1714972089,9"),
        ("bitlink,long_url,Create Date,Total Clicks", "bit.ly/s-1,https://a.example,2024-05-06T05:08:09,9"),
        ("url,short_code,created_at,total_clicks", "https://a.example,s-1,2024-05-06T05:08:09.000+00:00,9"),
        ("URL,Short Code,Created At,Clicks", "https://a.example,s-1,1714972089.0,9"),
    ],
)
def test_column_variants_and_date_forms(header: str, row: str) -> None:
    parsed = parse_csv(f"{header}\n{row}\n")
    assert parsed.errors == []
    assert [(r.short_code, r.created_at, r.clicks) for r in parsed.rows] == [
        ("s-1", _utc(2024, 5, 6, 5, 8, 9), 9)
    ]


def test_missing_or_empty_date_and_count_default_to_now_and_zero() -> None:
    parsed = parse_csv(
        "url,short_code,created_at,clicks\nhttps://a.example,a-1,,\nhttps://b.example,b-1, , \n"
    )
    assert [(r.created_at, r.clicks) for r in parsed.rows] == [(None, 0), (None, 0)]
    parsed = parse_csv("url\nhttps://a.example\n")
    assert [(r.created_at, r.clicks) for r in parsed.rows] == [(None, 0)]


def test_bad_dates_and_counts_are_row_errors_naming_the_column() -> None:
    text = (
        "createdAt,shortCode,longUrl,visits\n"
        "yesterday,s-1,https://a.example,1\n"  # 2: not a date
        "2024-01-01T00:00:00Z,s-2,https://a.example,-3\n"  # 3: negative
        "2024-01-01T00:00:00Z,s-3,https://a.example,1.5\n"  # 4: not whole
        "2999-01-01T00:00:00Z,s-4,https://a.example,1\n"  # 5: in the future
        "1969-12-31T23:59:59Z,s-5,https://a.example,1\n"  # 6: before 1970
        "2024-13-01 00:00:00,s-6,https://a.example,1\n"  # 7: no such month
        "2024-01-01T00:00:00Z,s-7,https://a.example," + "9" * 5000 + "\n"  # 8: absurd count
        "2024-01-01T00:00:00Z,s-8,https://a.example,12\n"  # 9: fine
    )
    parsed = parse_csv(text)
    assert [r.short_code for r in parsed.rows] == ["s-8"]
    assert [(e.row, e.field) for e in parsed.errors] == [
        (2, "created_at"),
        (3, "clicks"),
        (4, "clicks"),
        (5, "created_at"),
        (6, "created_at"),
        (7, "created_at"),
        (8, "clicks"),
    ]
    assert all(e.message.startswith("createdAt ") for e in parsed.errors if e.field == "created_at")
    assert all(e.message.startswith("visits ") for e in parsed.errors if e.field == "clicks")
    assert "'yesterday'" in parsed.errors[0].message


def test_parse_created_at_and_clicks_directly() -> None:
    now = _utc(2025, 1, 1)
    with pytest.raises(ValidationFailed) as exc:
        parse_created_at("2024-12-31T23:00:00-02:00", "d", now=now)  # 2025-01-01T01:00Z: after now
    assert exc.value.field == "created_at"
    assert parse_created_at("0", "d", now=now) == _utc(1970, 1, 1)
    assert parse_created_at("2024-12-31T23:00:00+0130", "d", now=now) == _utc(2024, 12, 31, 21, 30)
    assert parse_clicks("007", "c") == 7
    for bad in ("1e3", "٣", "1 000", "+5"):
        with pytest.raises(ValidationFailed) as exc:
            parse_clicks(bad, "Clicks")
        assert exc.value.field == "clicks" and exc.value.message.startswith("Clicks ")
