"""Write-time validation of link rules.

`validate_rule` checks a rule strictly (unknown keys, wrong types, empty lists, bad time zones,
country codes, hosts, regexes) and returns the normalized `conditions` the evaluator compiles.
Every error is a `ValidationFailed` whose `field` is a path such as `conditions.countries[2]`.
"""

from __future__ import annotations

import functools
import re
import zoneinfo
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final
from urllib.parse import urlsplit

from engine.errors import ValidationFailed
from engine.rules.models import DEVICE_TYPES, RULE_TYPES

MAX_LIST_ITEMS: Final = 500
MAX_TEXT_LENGTH: Final = 200
MAX_URL_LENGTH: Final = 2048
MAX_PATTERN_LENGTH: Final = 256
MAX_VARIANTS: Final = 20
MAX_VARIANT_ID_LENGTH: Final = 64
MAX_VARIANT_WEIGHT: Final = 1_000_000

# ISO 3166-1 alpha-2, plus XK (Kosovo), which MaxMind and DB-IP report although it is user-assigned.
COUNTRY_CODES: Final = frozenset(
    """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS
    BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE
    EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM
    HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC
    LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA
    NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW
    SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO
    TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS XK YE YT ZA ZM ZW
    """.split()
)
WEEKDAY_NAMES: Final = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

_CLOCK = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST = re.compile(rf"(?:\*\.)?(?:{_LABEL}\.)*{_LABEL}")
_LANGUAGE_TAG = re.compile(r"[a-z]{2,3}(?:-[a-z0-9]{1,8})*")


def validate_rule(
    rule_type: str,
    conditions: Mapping[str, Any],
    destination_url: str | None,
    weight: int | None,
) -> dict[str, Any]:
    """Check one rule and return its normalized conditions; raise `ValidationFailed` otherwise."""
    if rule_type not in RULE_TYPES:
        raise ValidationFailed(
            f"unknown rule type {rule_type!r}; expected one of {', '.join(RULE_TYPES)}", field="rule_type"
        )
    if not isinstance(conditions, Mapping):
        raise ValidationFailed("conditions must be an object", field="conditions")
    # An A/B rule sends visitors to its variants' URLs; its own destination is optional.
    if rule_type != "ab_test" or destination_url:
        _url(destination_url, "destination_url")
    if weight is not None and (not _is_int(weight) or not 0 <= weight <= MAX_VARIANT_WEIGHT):
        raise ValidationFailed(f"weight must be an integer from 0 to {MAX_VARIANT_WEIGHT}", field="weight")
    return _VALIDATORS[rule_type](conditions)


def parse_clock(text: str) -> int:
    """Minutes since midnight of a normalized "HH:MM" string."""
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def bound_instant(text: str, zone: zoneinfo.ZoneInfo, *, is_end: bool) -> datetime:
    """The UTC instant of a normalized `start`/`end` bound.

    A date means local midnight; as an `end` it includes that whole day. A naive datetime is local
    to `zone`; an aware one stands as given.
    """
    if len(text) == 10:
        day = date.fromisoformat(text) + timedelta(days=1 if is_end else 0)
        moment = datetime(day.year, day.month, day.day, tzinfo=zone)
    else:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=zone)
    return moment.astimezone(UTC)


def has_backtracking_risk(pattern: str) -> bool:
    """A cheap guard against catastrophic backtracking: reject backreferences and any repeated
    group that itself holds a quantifier or an alternation, as in `(a+)+` or `(a|aa)*`."""
    inner_risky: list[bool] = []  # one flag per open group
    closed_risky = False  # the previous token closed a risky group
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        step, risky_close = 1, False
        if ch == "\\":
            if i + 1 < n and pattern[i + 1] in "123456789":
                return True
            step = 2
        elif ch == "[":
            i = _class_end(pattern, i)
        elif ch == "(":
            if pattern.startswith("(?P=", i):
                return True
            inner_risky.append(False)
            step = 2 if pattern.startswith("(?", i) else 1
        elif ch == ")":
            risky_close = inner_risky.pop() if inner_risky else False
            if risky_close and inner_risky:
                inner_risky[-1] = True
        elif ch in "*+{?|":
            if ch in "*+{" and closed_risky:
                return True
            if inner_risky:
                inner_risky[-1] = True
        i += step
        closed_risky = risky_close
    return False


def _class_end(pattern: str, i: int) -> int:
    """Index of the `]` closing the character class opened at `i` (or the end of the pattern)."""
    j = i + 1
    if j < len(pattern) and pattern[j] == "^":
        j += 1
    if j < len(pattern) and pattern[j] == "]":
        j += 1
    while j < len(pattern) and pattern[j] != "]":
        j += 2 if pattern[j] == "\\" else 1
    return j


@functools.cache
def _time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


# --- per-type validators -------------------------------------------------------------------------


def _device(conditions: Mapping[str, Any]) -> dict[str, Any]:
    _keys(conditions, required=("device_types", "os", "browsers"))
    return _string_lists(conditions, {"device_types": _device_type, "os": _lowered, "browsers": _lowered})


def _geo(conditions: Mapping[str, Any]) -> dict[str, Any]:
    _keys(conditions, required=("countries", "regions", "cities"), optional=("exclude",))
    out = _string_lists(conditions, {"countries": _country, "regions": _lowered, "cities": _lowered})
    if "exclude" in conditions:
        out["exclude"] = _bool(conditions["exclude"], "conditions.exclude")
    return out


def _time(conditions: Mapping[str, Any]) -> dict[str, Any]:
    _keys(conditions, required=("weekdays", "hours", "start", "end"), optional=("timezone",))
    tz_name = conditions.get("timezone", "UTC")
    if not isinstance(tz_name, str) or tz_name not in _time_zones():
        raise ValidationFailed("timezone must be an IANA time zone name", field="conditions.timezone")
    zone = zoneinfo.ZoneInfo(tz_name)
    out: dict[str, Any] = {"timezone": tz_name}
    if "weekdays" in conditions:
        days = _list(conditions["weekdays"], "conditions.weekdays")
        out["weekdays"] = sorted({_weekday(day, f"conditions.weekdays[{i}]") for i, day in enumerate(days)})
    if "hours" in conditions:
        windows = _list(conditions["hours"], "conditions.hours")
        out["hours"] = [_window(window, f"conditions.hours[{i}]") for i, window in enumerate(windows)]
    instants: dict[str, datetime] = {}
    for key in ("start", "end"):
        if key in conditions:
            out[key] = _bound(conditions[key], f"conditions.{key}")
            try:
                instants[key] = bound_instant(out[key], zone, is_end=key == "end")
            except (OverflowError, ValueError):
                raise ValidationFailed("date is out of range", field=f"conditions.{key}") from None
    if "start" in instants and "end" in instants and instants["start"] >= instants["end"]:
        raise ValidationFailed("end must be after start", field="conditions.end")
    return out


def _referrer(conditions: Mapping[str, Any]) -> dict[str, Any]:
    _keys(conditions, required=("hosts", "pattern", "direct"))
    out = _string_lists(conditions, {"hosts": _host})
    if "pattern" in conditions:
        out["pattern"] = _pattern(conditions["pattern"], "conditions.pattern")
    if "direct" in conditions:
        if conditions["direct"] is not True:
            raise ValidationFailed("direct must be true (omit it otherwise)", field="conditions.direct")
        out["direct"] = True
    return out


def _language(conditions: Mapping[str, Any]) -> dict[str, Any]:
    _keys(conditions, required=("languages",))
    return _string_lists(conditions, {"languages": _language_tag})


def _ab_test(conditions: Mapping[str, Any]) -> dict[str, Any]:
    _keys(conditions, required=("variants",))
    items = _list(conditions["variants"], "conditions.variants", max_items=MAX_VARIANTS)
    variants: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        path = f"conditions.variants[{i}]"
        if not isinstance(item, Mapping):
            raise ValidationFailed("a variant must be an object", field=path)
        _keys(item, required=("id", "url", "weight"), path=path, all_required=True)
        variant_id = _text(item["id"], f"{path}.id", MAX_VARIANT_ID_LENGTH)
        if variant_id in seen:
            raise ValidationFailed(f"duplicate variant id {variant_id!r}", field=f"{path}.id")
        seen.add(variant_id)
        weight = item["weight"]
        if not _is_int(weight) or not 0 <= weight <= MAX_VARIANT_WEIGHT:
            raise ValidationFailed(
                f"weight must be an integer from 0 to {MAX_VARIANT_WEIGHT}", field=f"{path}.weight"
            )
        variants.append({"id": variant_id, "url": _url(item["url"], f"{path}.url"), "weight": weight})
    if sum(v["weight"] for v in variants) <= 0:
        raise ValidationFailed("variant weights must add up to more than 0", field="conditions.variants")
    return {"variants": variants}


_VALIDATORS: Final[dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]]] = {
    "device": _device,
    "geo": _geo,
    "time": _time,
    "referrer": _referrer,
    "language": _language,
    "ab_test": _ab_test,
}


# --- field checks ---------------------------------------------------------------------------------


def _keys(
    obj: Mapping[str, Any],
    *,
    required: tuple[str, ...],
    optional: tuple[str, ...] = (),
    path: str = "conditions",
    all_required: bool = False,
) -> None:
    """Reject unknown keys; demand all of `required` (or at least one when not `all_required`)."""
    for key in obj:
        if key not in required and key not in optional:
            raise ValidationFailed(f"unknown key {key!r}", field=f"{path}.{key}")
    missing = [key for key in required if key not in obj]
    if all_required and missing:
        raise ValidationFailed(f"{missing[0]} is required", field=f"{path}.{missing[0]}")
    if len(missing) == len(required):
        raise ValidationFailed(f"needs at least one of {', '.join(required)}", field=path)


def _list(value: Any, path: str, *, max_items: int = MAX_LIST_ITEMS) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise ValidationFailed("must be a list", field=path)
    if not value:
        raise ValidationFailed("must not be empty", field=path)
    if len(value) > max_items:
        raise ValidationFailed(f"must have at most {max_items} items", field=path)
    return list(value)


def _strings(value: Any, path: str, normalize: Callable[[str, str], str]) -> list[str]:
    """A non-empty list of strings, each normalized (or rejected) by `normalize`; deduplicated."""
    out: dict[str, None] = {}
    for i, item in enumerate(_list(value, path)):
        item_path = f"{path}[{i}]"
        out[normalize(_text(item, item_path, MAX_TEXT_LENGTH), item_path)] = None
    return list(out)


def _string_lists(
    conditions: Mapping[str, Any], normalizers: Mapping[str, Callable[[str, str], str]]
) -> dict[str, Any]:
    """The normalized string lists among `conditions`, one normalizer per key."""
    return {
        key: _strings(conditions[key], f"conditions.{key}", normalize)
        for key, normalize in normalizers.items()
        if key in conditions
    }


def _text(value: Any, path: str, max_length: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationFailed("must be a non-empty string", field=path)
    if len(value) > max_length:
        raise ValidationFailed(f"must be at most {max_length} characters", field=path)
    return value.strip()


def _bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationFailed("must be true or false", field=path)
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _lowered(text: str, path: str) -> str:
    return text.casefold()


def _device_type(text: str, path: str) -> str:
    kind = text.lower()
    if kind not in DEVICE_TYPES:
        raise ValidationFailed(f"device type must be one of {', '.join(sorted(DEVICE_TYPES))}", field=path)
    return kind


def _country(text: str, path: str) -> str:
    code = text.upper()
    if code not in COUNTRY_CODES:
        raise ValidationFailed(f"{text!r} is not an ISO 3166-1 alpha-2 country code", field=path)
    return code


def _host(text: str, path: str) -> str:
    host = text.lower().rstrip(".")
    if len(host) > 253 or not _HOST.fullmatch(host):
        raise ValidationFailed(f"{text!r} is not a host name or *.wildcard host", field=path)
    return host


def _language_tag(text: str, path: str) -> str:
    tag = text.lower().replace("_", "-")
    if len(tag) > 35 or not _LANGUAGE_TAG.fullmatch(tag):
        raise ValidationFailed(f"{text!r} is not a BCP 47 language tag", field=path)
    return tag


def _weekday(value: Any, path: str) -> int:
    if _is_int(value) and 0 <= value <= 6:
        return int(value)
    if isinstance(value, str):
        name = value.strip().lower()
        for number, full in enumerate(WEEKDAY_NAMES):
            if name in (full, full[:3]):
                return number
    raise ValidationFailed("weekday must be 0 (Monday) to 6 (Sunday) or a day name", field=path)


def _window(value: Any, path: str) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ValidationFailed(
            'an hours window must be an object {"start": "HH:MM", "end": "HH:MM"}', field=path
        )
    _keys(value, required=("start", "end"), path=path, all_required=True)
    window = {key: _clock(value[key], f"{path}.{key}") for key in ("start", "end")}
    if window["start"] == window["end"]:
        raise ValidationFailed("start and end must differ", field=f"{path}.end")
    return window


def _clock(value: Any, path: str) -> str:
    if not isinstance(value, str) or not _CLOCK.fullmatch(value):
        raise ValidationFailed("must be a time of day HH:MM (00:00 to 23:59)", field=path)
    return value


def _bound(value: Any, path: str) -> str:
    if isinstance(value, str):
        try:
            if len(value) == 10:
                return date.fromisoformat(value).isoformat()
            if len(value) > 10:
                return datetime.fromisoformat(value).isoformat()
        except ValueError:
            pass
    raise ValidationFailed("must be an ISO 8601 date or datetime", field=path)


def _pattern(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValidationFailed("must be a non-empty regular expression", field=path)
    if len(value) > MAX_PATTERN_LENGTH:
        raise ValidationFailed(f"must be at most {MAX_PATTERN_LENGTH} characters", field=path)
    if has_backtracking_risk(value):
        raise ValidationFailed(
            "backreferences and repeated groups holding a quantifier or | are not allowed", field=path
        )
    try:
        re.compile(value, re.IGNORECASE)
    except re.error as exc:
        raise ValidationFailed(f"invalid regular expression: {exc}", field=path) from None
    return value


def _url(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationFailed("must be a non-empty URL", field=path)
    if len(value) > MAX_URL_LENGTH:
        raise ValidationFailed(f"must be at most {MAX_URL_LENGTH} characters", field=path)
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        raise ValidationFailed("must not contain spaces or control characters", field=path)
    try:
        parts = urlsplit(value)
        valid = parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
    except ValueError:
        valid = False
    if not valid:
        raise ValidationFailed("must be an absolute http(s) URL", field=path)
    return value
