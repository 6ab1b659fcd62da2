"""Import links from other shorteners' CSV exports (and a plain CSV), detected by header.

Headers are compared case-insensitively with spaces, `_` and `-` ignored (`Long URL` = `long_url`
= `longUrl`). Recognized formats, checked in this order:

    shlink  shortCode + longUrl   (shlink-web-client export: createdAt,domain,shortCode,shortUrl,
                                   longUrl,title,tags,visits)
    kutt    address + target      (Kutt link objects: address,target,description,link,visit_count,..)
    yourls  keyword + url         (YOURLS url table / export plugins: keyword,url,title,timestamp,
                                   ip,clicks)
    bitly   long_url + link|bitlink|short_url (Bitly export: link/bitlink, long_url, title,
                                   created_at, tags); the code is the last path segment of the link
    plain   url [+ short_code, title, tags]

Tags are split on `|` or `,`. Rows are validated before any write; each batch of valid rows is
inserted in one transaction, so a database failure never leaves a batch half-imported. The valid
rows must fit the plan's monthly link quota as a whole (402 before anything is written); each
batch re-checks it in its transaction.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import asyncpg

from engine.audit import AuditContext, write_audit
from engine.billing.usage import enforce_link_quota
from engine.errors import LinkRiftError, QuotaExceeded, ValidationFailed
from engine.links.repository import change_payload
from engine.links.shortcodes import generate_code, validate_custom_code
from engine.links.tags import ensure_tags, validate_tag_names
from engine.links.urls import validate_destination

Format = Literal["bitly", "shlink", "kutt", "yourls", "plain"]
FORMATS: tuple[Format, ...] = ("bitly", "shlink", "kutt", "yourls", "plain")
BATCH_SIZE = 500
MAX_ROWS = 50_000
MAX_TITLE = 500
MAX_REPORTED_ERRORS = 1000

# For each format: our field -> the normalized source headers that may carry it (first wins).
_COLUMNS: dict[Format, dict[str, tuple[str, ...]]] = {
    "shlink": {"url": ("longurl",), "short_code": ("shortcode",), "title": ("title",), "tags": ("tags",)},
    "kutt": {"url": ("target",), "short_code": ("address",), "title": ("description",), "tags": ()},
    "yourls": {"url": ("url",), "short_code": ("keyword",), "title": ("title",), "tags": ()},
    "bitly": {
        "url": ("longurl",),
        "short_code": ("link", "bitlink", "shorturl"),
        "title": ("title",),
        "tags": ("tags",),
    },
    "plain": {"url": ("url",), "short_code": ("shortcode", "code"), "title": ("title",), "tags": ("tags",)},
}
_REQUIRED: dict[Format, tuple[str, ...]] = {
    "shlink": ("shortcode", "longurl"),
    "kutt": ("address", "target"),
    "yourls": ("keyword", "url"),
    "bitly": ("longurl",),
    "plain": ("url",),
}


@dataclass(frozen=True, slots=True)
class RowError:
    row: int  # 1-based line number in the file, the header being line 1
    field: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "field": self.field, "message": self.message}


@dataclass(frozen=True, slots=True)
class ImportRow:
    row: int
    url: str
    short_code: str | None
    title: str | None
    tags: tuple[str, ...] = ()


@dataclass(slots=True)
class ParsedImport:
    format: Format
    rows: list[ImportRow] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)


@dataclass(slots=True)
class ImportReport:
    format: Format
    total_rows: int = 0
    imported: int = 0
    failed: int = 0
    errors: list[RowError] = field(default_factory=list)

    def add_error(self, error: RowError) -> None:
        self.failed += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(error)

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "total_rows": self.total_rows,
            "imported": self.imported,
            "failed": self.failed,
            "errors": [e.as_dict() for e in self.errors],
            "errors_truncated": self.failed > len(self.errors),
        }


def normalize_header(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name.strip().lstrip("\ufeff").lower())


def detect_format(header: Sequence[str]) -> Format:
    names = {normalize_header(h) for h in header}
    for fmt in ("shlink", "kutt", "yourls", "bitly", "plain"):
        required = _REQUIRED[fmt]
        if all(r in names for r in required) and (fmt != "bitly" or names & {"link", "bitlink", "shorturl"}):
            return fmt
    raise ValidationFailed(
        "unrecognized CSV header; expected a Bitly, Shlink, Kutt or YOURLS export or url,short_code,title,tags",
        field="file",
    )


def _code_from(fmt: Format, raw: str) -> str | None:
    raw = raw.strip()
    if not raw:
        return None
    if fmt == "bitly":
        # bit.ly/abc, https://bit.ly/abc or a custom domain's link: the back-half is the code.
        path = urlsplit(raw if "://" in raw else f"https://{raw}").path
        raw = path.rstrip("/").rsplit("/", 1)[-1]
    return raw or None


def _split_tags(raw: str) -> list[str]:
    return [t for t in re.split(r"[|,]", raw) if t.strip()]


def parse_csv(text: str, fmt: Format | None = None, *, blocked_hosts: Collection[str] = ()) -> ParsedImport:
    """Parse and validate every row; nothing touches the database here."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    try:
        header = next(reader)
    except StopIteration:
        raise ValidationFailed("the file is empty", field="file") from None
    except csv.Error as exc:
        raise ValidationFailed(f"not a CSV file: {exc}", field="file") from None
    fmt = fmt or detect_format(header)
    if fmt not in FORMATS:
        raise ValidationFailed(f"format must be one of {', '.join(FORMATS)}", field="format")
    positions = {normalize_header(h): i for i, h in reversed(list(enumerate(header)))}
    missing = [r for r in _REQUIRED[fmt] if r not in positions]
    if missing:
        raise ValidationFailed(f"the {fmt} format needs the column(s) {', '.join(missing)}", field="file")
    columns = {
        ours: next((positions[c] for c in candidates if c in positions), None)
        for ours, candidates in _COLUMNS[fmt].items()
    }
    parsed = ParsedImport(fmt)
    seen_codes: dict[str, int] = {}
    line = 1
    try:
        for record in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in record):
                continue
            if len(parsed.rows) + len(parsed.errors) >= MAX_ROWS:
                raise ValidationFailed(f"at most {MAX_ROWS} rows per import", field="file")
            try:
                row = _parse_row(fmt, line, record, columns, blocked_hosts)
            except ValidationFailed as exc:
                parsed.errors.append(RowError(line, exc.field or "row", exc.message))
                continue
            if row.short_code:
                key = row.short_code
                if key in seen_codes:
                    parsed.errors.append(
                        RowError(
                            line, "short_code", f"short_code {key!r} already appears on row {seen_codes[key]}"
                        )
                    )
                    continue
                seen_codes[key] = line
            parsed.rows.append(row)
    except csv.Error as exc:
        raise ValidationFailed(f"CSV error near line {line}: {exc}", field="file") from None
    return parsed


def _parse_row(
    fmt: Format,
    line: int,
    record: list[str],
    columns: Mapping[str, int | None],
    blocked_hosts: Collection[str],
) -> ImportRow:
    def cell(name: str) -> str:
        index = columns.get(name)
        return record[index].strip() if index is not None and index < len(record) else ""

    url = validate_destination(cell("url"), field="url", blocklist=blocked_hosts)
    code = _code_from(fmt, cell("short_code"))
    if code is not None:
        code = validate_custom_code(code)
    title = cell("title") or None
    if title and len(title) > MAX_TITLE:
        raise ValidationFailed(f"title must be at most {MAX_TITLE} characters", field="title")
    tags = validate_tag_names(_split_tags(cell("tags")))
    return ImportRow(line, url, code, title, tuple(tags))


@dataclass(frozen=True, slots=True)
class ImportTarget:
    workspace_id: str
    user_id: str
    topic: str
    audit: AuditContext
    domain_id: str | None = None


async def import_rows(
    conn: asyncpg.Connection,
    target: ImportTarget,
    parsed: ParsedImport,
    *,
    batch_size: int = BATCH_SIZE,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Insert the valid rows batch by batch (one transaction each); report every failed row.

    Raises QuotaExceeded (field links_per_month) before any write if the valid rows do not fit
    the plan's remaining monthly links."""
    if parsed.rows:
        await enforce_link_quota(conn, target.workspace_id, adding=len(parsed.rows))
    report = ImportReport(parsed.format, total_rows=len(parsed.rows) + len(parsed.errors))
    for error in parsed.errors:
        report.add_error(error)
    for start in range(0, len(parsed.rows), batch_size):
        batch = parsed.rows[start : start + batch_size]
        batch = await _drop_taken_codes(conn, target, batch, report)
        try:
            async with conn.transaction():
                if batch:
                    # Concurrent creations may have used the quota since the check above.
                    await enforce_link_quota(conn, target.workspace_id, adding=len(batch))
                await _insert_batch(conn, target, batch)
            report.imported += len(batch)
        except (asyncpg.PostgresError, LinkRiftError) as exc:
            field = exc.field if isinstance(exc, QuotaExceeded) and exc.field else "row"
            for row in batch:
                report.add_error(RowError(row.row, field, f"batch rolled back: {exc}"))
        if progress:
            progress(len(batch))
    return report


async def _drop_taken_codes(
    conn: asyncpg.Connection, target: ImportTarget, batch: list[ImportRow], report: ImportReport
) -> list[ImportRow]:
    codes = [r.short_code for r in batch if r.short_code]
    if not codes:
        return batch
    taken = {
        r["short_code"]
        for r in await conn.fetch(
            """SELECT short_code FROM links WHERE short_code = ANY($1::text[]) AND deleted_at IS NULL
               AND domain_id IS NOT DISTINCT FROM $2::uuid""",
            codes,
            target.domain_id,
        )
    }
    kept = []
    for row in batch:
        if row.short_code in taken:
            report.add_error(
                RowError(row.row, "short_code", f"short_code {row.short_code!r} is already taken")
            )
        else:
            kept.append(row)
    return kept


async def _free_codes(conn: asyncpg.Connection, domain_id: str | None, count: int) -> list[str]:
    """`count` generated codes that no live link on the domain uses."""
    codes: list[str] = []
    while len(codes) < count:
        candidates = list({generate_code() for _ in range(count - len(codes))} - set(codes))
        used = {
            r["short_code"]
            for r in await conn.fetch(
                """SELECT short_code FROM links WHERE short_code = ANY($1::text[]) AND deleted_at IS NULL
                   AND domain_id IS NOT DISTINCT FROM $2::uuid""",
                candidates,
                domain_id,
            )
        }
        codes.extend(c for c in candidates if c not in used)
    return codes


async def _insert_batch(conn: asyncpg.Connection, target: ImportTarget, batch: list[ImportRow]) -> None:
    if not batch:
        return
    generated = iter(await _free_codes(conn, target.domain_id, sum(1 for r in batch if not r.short_code)))
    codes = [r.short_code or next(generated) for r in batch]
    rows = await conn.fetch(
        """INSERT INTO links (user_id, workspace_id, domain_id, url, short_code, title)
           SELECT $1, $2, $3, u, c, t FROM unnest($4::text[], $5::text[], $6::text[]) AS x(u, c, t)
           RETURNING id, workspace_id, domain_id, short_code""",
        target.user_id,
        target.workspace_id,
        target.domain_id,
        [r.url for r in batch],
        codes,
        [r.title for r in batch],
    )
    by_code = {r["short_code"]: r for r in rows}
    tag_ids = await ensure_tags(conn, target.workspace_id, sorted({t for r in batch for t in r.tags}))
    pairs = [
        (str(by_code[code]["id"]), tag_ids[t]) for code, r in zip(codes, batch, strict=True) for t in r.tags
    ]
    if pairs:
        await conn.execute(
            "INSERT INTO link_tags (link_id, tag_id) SELECT * FROM unnest($1::uuid[], $2::uuid[])"
            " ON CONFLICT DO NOTHING",
            [p[0] for p in pairs],
            [p[1] for p in pairs],
        )
    await conn.executemany(
        "INSERT INTO outbox (topic, key, payload) VALUES ($1, $2, $3)",
        [(target.topic, str(r["id"]), change_payload("created", r)) for r in rows],
    )
    await write_audit(
        conn,
        target.audit,
        target.workspace_id,
        "link.imported",
        "link",
        None,
        metadata={"count": len(rows), "first_row": batch[0].row, "last_row": batch[-1].row},
    )
