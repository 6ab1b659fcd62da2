"""Import links from other shorteners' CSV exports (and a plain CSV), detected by header.

Headers are compared case-insensitively with spaces, `_` and `-` ignored (`Long URL` = `long_url`
= `longUrl`). Recognized formats, checked in this order:

    shlink  shortCode + longUrl   (shlink-web-client export: createdAt,domain,shortCode,shortUrl,
                                   longUrl,title,tags,visits; API field names dateCreated and
                                   visitsCount are accepted too)
    kutt    address + target      (Kutt link objects: address,target,description,link,visit_count,
                                   created_at,..)
    yourls  keyword + url         (YOURLS url table / export plugins: keyword,url,title,timestamp,
                                   ip,clicks)
    bitly   long_url + link|bitlink|short_url (Bitly export: link/bitlink, long_url, title,
                                   created_at, tags, clicks); the code is the last path segment of
                                   the link
    plain   url [+ short_code, title, tags, created_at, clicks|total_clicks] (our own export)

The source's creation date becomes the link's `created_at` (ISO 8601 with or without a zone,
`YYYY-MM-DD HH:MM:SS`, or unix seconds; no zone means UTC) and its click count the link's
`imported_clicks`, kept apart from the clicks LinkRift tracks (see docs/api-links.md#import).
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
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import asyncpg

from engine.audit import AuditContext, write_audit
from engine.billing.usage import enforce_link_quota
from engine.errors import LinkRiftError, QuotaExceeded, ValidationFailed
from engine.links.shortcodes import generate_code, validate_custom_code
from engine.links.tags import ensure_tags, validate_tag_names
from engine.links.urls import validate_destination
from engine.outbox import link_change, write_outbox_many

Format = Literal["bitly", "shlink", "kutt", "yourls", "plain"]
FORMATS: tuple[Format, ...] = ("bitly", "shlink", "kutt", "yourls", "plain")
BATCH_SIZE = 500
MAX_ROWS = 50_000
MAX_TITLE = 500
MAX_REPORTED_ERRORS = 1000
MAX_CLICKS = 10**15
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_FORMULA_START = ("=", "+", "-", "@", "'")

# For each format: our field -> the normalized source headers that may carry it (first wins).
_COLUMNS: dict[Format, dict[str, tuple[str, ...]]] = {
    "shlink": {
        "url": ("longurl",),
        "short_code": ("shortcode",),
        "title": ("title",),
        "tags": ("tags",),
        "created_at": ("createdat", "datecreated"),
        "clicks": ("visits", "visitscount", "visitssummarytotal", "visitstotal"),
    },
    "kutt": {
        "url": ("target",),
        "short_code": ("address",),
        "title": ("description",),
        "tags": (),
        "created_at": ("createdat",),
        "clicks": ("visitcount", "visits"),
    },
    "yourls": {
        "url": ("url",),
        "short_code": ("keyword",),
        "title": ("title",),
        "tags": (),
        "created_at": ("timestamp", "createdat"),
        "clicks": ("clicks",),
    },
    "bitly": {
        "url": ("longurl",),
        "short_code": ("link", "bitlink", "shorturl"),
        "title": ("title",),
        "tags": ("tags",),
        "created_at": ("createdat", "createdate", "created"),
        "clicks": ("clicks", "totalclicks", "engagements"),
    },
    "plain": {
        "url": ("url",),
        "short_code": ("shortcode", "code"),
        "title": ("title",),
        "tags": ("tags",),
        "created_at": ("createdat",),
        "clicks": ("clicks", "totalclicks"),
    },
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
    created_at: datetime | None = None  # None: the time of the import
    clicks: int = 0


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


_UNIX_SECONDS = re.compile(r"\d{1,12}(\.\d+)?")


def parse_created_at(raw: str, column: str, *, now: datetime | None = None) -> datetime | None:
    """A source's creation date in UTC (None for an empty cell), or ValidationFailed (field
    `created_at`) whose message names the file's column.

    ISO 8601 with or without a zone (`Z`, `+00:00`, `+0000`), `YYYY-MM-DD HH:MM:SS` (YOURLS)
    and unix seconds; a time without a zone is UTC. Dates before 1970 or in the future are
    refused: no shortener made a link then."""
    raw = raw.strip()
    if not raw:
        return None
    try:
        if _UNIX_SECONDS.fullmatch(raw):
            value = datetime.fromtimestamp(float(raw), UTC)
        else:
            value = datetime.fromisoformat(raw)
            value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        raise ValidationFailed(
            f"{column} must be an ISO 8601 date, 'YYYY-MM-DD HH:MM:SS' or unix seconds (got {raw[:40]!r})",
            field="created_at",
        ) from None
    if not EARLIEST <= value <= (now or datetime.now(UTC)):
        raise ValidationFailed(
            f"{column} must be between 1970 and now (got {raw[:40]!r})", field="created_at"
        )
    return value


def parse_clicks(raw: str, column: str) -> int:
    """A source's click count (0 for an empty cell), or ValidationFailed (field `clicks`) whose
    message names the file's column."""
    raw = raw.strip()
    if not raw:
        return 0
    if not raw.isascii() or not raw.isdigit() or len(raw) > 16 or int(raw) > MAX_CLICKS:
        raise ValidationFailed(
            f"{column} must be a whole number from 0 to {MAX_CLICKS} (got {raw[:40]!r})", field="clicks"
        )
    return int(raw)


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
    names = {ours: header[i].strip().lstrip("\ufeff") for ours, i in columns.items() if i is not None}
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
                row = _parse_row(fmt, line, record, columns, names, blocked_hosts)
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


def escape_cell(value: str) -> str:
    """A CSV cell a spreadsheet will not run: a leading =, +, - or @ would make it a formula
    (CSV injection), so such a value, and one already starting with the escape `'`, gets a `'`."""
    return "'" + value if value[:1] in _FORMULA_START else value


def unescape_cell(value: str) -> str:
    """The inverse of `escape_cell`: export → import gives back exactly what was exported."""
    return value[1:] if value[:1] == "'" and value[1:2] in _FORMULA_START else value


def _parse_row(
    fmt: Format,
    line: int,
    record: list[str],
    columns: Mapping[str, int | None],
    names: Mapping[str, str],
    blocked_hosts: Collection[str],
) -> ImportRow:
    def cell(name: str) -> str:
        index = columns.get(name)
        value = record[index].strip() if index is not None and index < len(record) else ""
        if "\x00" in value:  # PostgreSQL text cannot hold it: this row fails, not its batch
            raise ValidationFailed(f"{name} must not contain NUL characters", field=name)
        return unescape_cell(value)

    url = validate_destination(cell("url"), field="url", blocklist=blocked_hosts)
    code = _code_from(fmt, cell("short_code"))
    if code is not None:
        code = validate_custom_code(code)
    title = cell("title") or None
    if title and len(title) > MAX_TITLE:
        raise ValidationFailed(f"title must be at most {MAX_TITLE} characters", field="title")
    tags = validate_tag_names(_split_tags(cell("tags")))
    created_at = parse_created_at(cell("created_at"), names.get("created_at", "created_at"))
    clicks = parse_clicks(cell("clicks"), names.get("clicks", "clicks"))
    return ImportRow(line, url, code, title, tuple(tags), created_at, clicks)


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
    """Insert the valid rows batch by batch (one transaction each); report every failed row. A
    batch the database refuses is retried row by row, so one bad row costs only itself.

    Raises QuotaExceeded (field links_per_month) before any write if the valid rows do not fit
    the plan's remaining monthly links."""
    if parsed.rows:
        await enforce_link_quota(conn, target.workspace_id, adding=len(parsed.rows))
    report = ImportReport(parsed.format, total_rows=len(parsed.rows) + len(parsed.errors))
    for error in parsed.errors:
        report.add_error(error)
    for start in range(0, len(parsed.rows), batch_size):
        rows = parsed.rows[start : start + batch_size]
        batch = await _drop_taken_codes(conn, target, rows, report)
        try:
            async with conn.transaction():
                if batch:
                    # Concurrent creations may have used the quota since the check above.
                    await enforce_link_quota(conn, target.workspace_id, adding=len(batch))
                await _insert_batch(conn, target, batch)
            report.imported += len(batch)
        except asyncpg.PostgresError:
            for row in batch:
                await _insert_alone(conn, target, row, report)
        except LinkRiftError as exc:
            field = exc.field if isinstance(exc, QuotaExceeded) and exc.field else "row"
            for row in batch:
                report.add_error(RowError(row.row, field, f"batch rolled back: {exc}"))
        if progress:
            # Every row of the batch is done, imported or reported (a taken code included).
            progress(len(rows))
    return report


async def _insert_alone(
    conn: asyncpg.Connection, target: ImportTarget, row: ImportRow, report: ImportReport
) -> None:
    try:
        async with conn.transaction():
            await enforce_link_quota(conn, target.workspace_id, adding=1)
            await _insert_batch(conn, target, [row])
        report.imported += 1
    except (asyncpg.PostgresError, LinkRiftError) as exc:
        field = exc.field if isinstance(exc, QuotaExceeded) and exc.field else "row"
        report.add_error(RowError(row.row, field, f"not imported: {exc}"))


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
    # total_clicks stays 0: it counts the clicks LinkRift tracks (the worker writes it).
    rows = await conn.fetch(
        """INSERT INTO links (user_id, workspace_id, domain_id, url, short_code, title,
                              created_at, imported_clicks, imported_at)
           SELECT $1, $2, $3, u, c, t, COALESCE(d, now()), n, now()
           FROM unnest($4::text[], $5::text[], $6::text[], $7::timestamptz[], $8::bigint[])
                AS x(u, c, t, d, n)
           RETURNING id, workspace_id, domain_id, short_code""",
        target.user_id,
        target.workspace_id,
        target.domain_id,
        [r.url for r in batch],
        codes,
        [r.title for r in batch],
        [r.created_at for r in batch],
        [r.clicks for r in batch],
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
    await write_outbox_many(conn, [(target.topic, str(r["id"]), link_change("created", r)) for r in rows])
    await write_audit(
        conn,
        target.audit,
        target.workspace_id,
        "link.imported",
        "link",
        None,
        metadata={"count": len(rows), "first_row": batch[0].row, "last_row": batch[-1].row},
    )
