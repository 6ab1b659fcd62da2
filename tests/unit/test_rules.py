"""Unit tests for the redirect rule evaluator: validation, every rule type, ordering and A/B."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from engine.errors import ValidationFailed
from engine.rules import (
    BALANCE_MIN_OBSERVED,
    Decision,
    RequestContext,
    Rule,
    Variant,
    balanced_shares,
    choose_variant,
    compile_rules,
    evaluate,
    needs_device,
    needs_geo,
    parse_accept_language,
    validate_rule,
)

DEFAULT = "https://example.com/default"
TARGET = "https://example.com/target"
# 2025-06-02 was a Monday.
MONDAY_NOON_UTC = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)


def ctx(**kwargs: Any) -> RequestContext:
    kwargs.setdefault("now", MONDAY_NOON_UTC)
    return RequestContext(**kwargs)


def decide(rule_type: str, conditions: dict[str, Any], **context: Any) -> Decision:
    rules = compile_rules([Rule("r1", rule_type, 0, conditions, TARGET)])
    assert rules.skipped == ()
    return evaluate(rules, DEFAULT, ctx(**context))


def matches(rule_type: str, conditions: dict[str, Any], **context: Any) -> bool:
    return decide(rule_type, conditions, **context).destination == TARGET


def invalid_field(
    rule_type: str, conditions: Any, destination: str | None = TARGET, weight: Any = None
) -> str:
    with pytest.raises(ValidationFailed) as info:
        validate_rule(rule_type, conditions, destination, weight)
    assert info.value.field is not None
    return info.value.field


# --- device ---------------------------------------------------------------------------------------


def test_device_matches_type_os_and_browser_case_insensitively() -> None:
    conditions = {"device_types": ["Mobile"], "os": ["iOS"], "browsers": ["Mobile Safari"]}
    assert matches("device", conditions, device_type="mobile", os="iOS", browser="Mobile Safari")
    assert matches("device", conditions, device_type="MOBILE", os="ios", browser="mobile safari")


def test_device_requires_every_given_key() -> None:
    conditions = {"device_types": ["mobile", "tablet"], "os": ["android"]}
    assert matches("device", conditions, device_type="tablet", os="Android")
    assert not matches("device", conditions, device_type="tablet", os="iOS")
    assert not matches("device", conditions, device_type="desktop", os="Android")
    assert not matches("device", conditions)


def test_device_rule_match_reports_rule_id() -> None:
    assert decide("device", {"device_types": ["desktop"]}, device_type="desktop") == Decision(TARGET, "r1")
    assert decide("device", {"device_types": ["desktop"]}, device_type="mobile") == Decision(DEFAULT)


# --- geo ------------------------------------------------------------------------------------------


def test_geo_countries_regions_cities() -> None:
    assert matches("geo", {"countries": ["us", "CA"]}, country="CA")
    assert not matches("geo", {"countries": ["US"]}, country="FR")
    assert matches("geo", {"cities": ["São Paulo"]}, city="SÃO PAULO")
    # DB-IP City Lite's "City (District)" names belong to the city; not the other way round.
    assert matches("geo", {"cities": ["london"]}, city="London (Shadwell)")
    assert matches("geo", {"cities": ["London (Shadwell)"]}, city="London (Shadwell)")
    assert not matches("geo", {"cities": ["London (Shadwell)"]}, city="London")
    assert not matches("geo", {"cities": ["London"]}, city="Londonderry")
    assert matches("geo", {"countries": ["US"], "regions": ["CA"]}, country="US", region="ca")
    assert not matches("geo", {"countries": ["US"], "regions": ["CA"]}, country="CA", region="ON")


def test_geo_unknown_location_does_not_match() -> None:
    assert not matches("geo", {"countries": ["US"]})


def test_geo_exclude_inverts_including_unknown() -> None:
    conditions = {"countries": ["US", "CA"], "exclude": True}
    assert not matches("geo", conditions, country="US")
    assert matches("geo", conditions, country="DE")
    assert matches("geo", conditions)


# --- time -----------------------------------------------------------------------------------------


def at(hour: int, minute: int = 0, day: int = 2) -> datetime:
    return datetime(2025, 6, day, hour, minute, tzinfo=UTC)


def test_time_hours_window_is_half_open() -> None:
    conditions = {"hours": [{"start": "09:00", "end": "17:00"}]}
    assert matches("time", conditions, now=at(9))
    assert matches("time", conditions, now=at(16, 59))
    assert not matches("time", conditions, now=at(17))
    assert not matches("time", conditions, now=at(8, 59))


def test_time_window_wrapping_past_midnight() -> None:
    conditions = {"hours": [{"start": "22:00", "end": "02:00"}]}
    assert matches("time", conditions, now=at(23, 30))
    assert matches("time", conditions, now=at(1, 59))
    assert not matches("time", conditions, now=at(2))
    assert not matches("time", conditions, now=at(12))


def test_time_wrapping_window_belongs_to_the_day_it_starts() -> None:
    conditions = {"weekdays": ["fri"], "hours": [{"start": "22:00", "end": "02:00"}]}
    assert matches("time", conditions, now=at(23, day=6))  # Friday night
    assert matches("time", conditions, now=at(1, day=7))  # early Saturday
    assert not matches("time", conditions, now=at(1, day=6))  # early Friday belongs to Thursday


def test_time_weekdays_by_number_and_name() -> None:
    assert matches("time", {"weekdays": [0]}, now=at(12))
    assert matches("time", {"weekdays": ["Monday"]}, now=at(12))
    assert matches("time", {"weekdays": ["sat", "SUNDAY"]}, now=at(12, day=8))
    assert not matches("time", {"weekdays": ["tue"]}, now=at(12))


def test_time_zone_shifts_local_time_and_day() -> None:
    tokyo = {"timezone": "Asia/Tokyo", "hours": [{"start": "09:00", "end": "10:00"}]}
    assert matches("time", tokyo, now=at(0, 30))  # 09:30 in Tokyo
    assert not matches("time", tokyo, now=at(9, 30))
    # Monday 20:00 in New York is Tuesday 00:00 UTC.
    new_york = {"timezone": "America/New_York", "weekdays": ["mon"]}
    assert matches("time", new_york, now=at(0, day=3))
    assert not matches("time", {"weekdays": ["mon"]}, now=at(0, day=3))


def test_time_date_range_end_date_is_inclusive() -> None:
    conditions = {"start": "2025-06-01", "end": "2025-06-02", "timezone": "Europe/Paris"}
    assert matches("time", conditions, now=at(21, 59))  # 23:59 in Paris on the 2nd
    assert not matches("time", conditions, now=at(22))  # the 3rd in Paris
    assert not matches("time", conditions, now=datetime(2025, 5, 31, 21, 59, tzinfo=UTC))


def test_time_datetime_bounds_with_and_without_offset() -> None:
    aware = {"start": "2025-06-02T12:00:00+00:00", "end": "2025-06-02T13:00Z"}
    assert matches("time", aware, now=at(12))
    assert not matches("time", aware, now=at(13))
    naive_local = {"timezone": "Asia/Tokyo", "start": "2025-06-02T21:00"}
    assert matches("time", naive_local, now=at(12))
    assert not matches("time", naive_local, now=at(11, 59))


def test_time_all_given_parts_must_match() -> None:
    conditions = {"weekdays": ["mon"], "hours": [{"start": "09:00", "end": "17:00"}], "end": "2025-06-30"}
    assert matches("time", conditions, now=at(12))
    assert not matches("time", conditions, now=at(12, day=3))
    assert not matches("time", conditions, now=datetime(2025, 7, 7, 12, tzinfo=UTC))


# --- referrer -------------------------------------------------------------------------------------


def test_referrer_exact_and_wildcard_hosts() -> None:
    conditions = {"hosts": ["t.co", "*.Google.com"]}
    assert matches("referrer", conditions, referer="https://t.co/abc")
    assert matches("referrer", conditions, referer="https://www.google.com/search?q=x")
    assert matches("referrer", conditions, referer="https://a.b.GOOGLE.com:8443/")
    assert not matches("referrer", conditions, referer="https://google.com/")
    assert not matches("referrer", conditions, referer="https://evilgoogle.com/")
    assert not matches("referrer", conditions, referer="https://t.co.evil.net/")
    assert matches("referrer", conditions, referer="t.co/abc")


def test_referrer_direct_traffic() -> None:
    assert matches("referrer", {"direct": True}, referer="")
    assert matches("referrer", {"direct": True}, referer="   ")
    assert not matches("referrer", {"direct": True}, referer="https://t.co/")
    assert not matches("referrer", {"hosts": ["t.co"]}, referer="")


def test_referrer_pattern_is_searched_case_insensitively() -> None:
    conditions = {"pattern": r"utm_source=news(letter)?"}
    assert matches("referrer", conditions, referer="https://mail.example/?UTM_SOURCE=Newsletter")
    assert not matches("referrer", conditions, referer="https://mail.example/?utm_source=ads")


def test_referrer_malformed_referer_does_not_raise() -> None:
    assert not matches("referrer", {"hosts": ["example.com"]}, referer="http://[::1")


# --- language -------------------------------------------------------------------------------------


def test_parse_accept_language_orders_by_quality() -> None:
    header = "fr;q=0.5, en-US, de;q=0.8, *;q=0.1, es;q=0, it;q=bogus, pt-BR"
    assert parse_accept_language(header) == ["en-us", "pt-br", "de", "fr"]
    assert parse_accept_language("") == []


def test_language_primary_tag_matches_regional_variants() -> None:
    assert matches("language", {"languages": ["en"]}, accept_language="en-GB,en;q=0.9")
    assert matches("language", {"languages": ["pt-BR"]}, accept_language="pt-br")
    assert not matches("language", {"languages": ["pt-BR"]}, accept_language="pt-PT,pt;q=0.9")
    assert not matches("language", {"languages": ["en"]}, accept_language="eng")
    assert not matches("language", {"languages": ["en"]})


def test_language_uses_the_top_preferences_only() -> None:
    assert not matches("language", {"languages": ["fr"]}, accept_language="de-CH, fr;q=0.5")
    assert matches("language", {"languages": ["fr"]}, accept_language="de;q=0.5, fr;q=0.9")
    assert matches("language", {"languages": ["fr"]}, accept_language="de, fr")  # tied at q=1


# --- ordering -------------------------------------------------------------------------------------


def test_higher_priority_first_ties_by_id_inactive_ignored() -> None:
    everywhere = {"exclude": True, "countries": ["AQ"]}
    rules = [
        Rule("b", "geo", 5, everywhere, "https://example.com/b"),
        Rule("a", "geo", 5, everywhere, "https://example.com/a"),
        Rule("low", "geo", 1, everywhere, "https://example.com/low"),
        Rule("off", "geo", 9, everywhere, "https://example.com/off", is_active=False),
    ]
    assert evaluate(compile_rules(rules), DEFAULT, ctx()) == Decision("https://example.com/a", "a")


def test_no_rules_and_no_match_give_the_default() -> None:
    assert evaluate(compile_rules([]), DEFAULT, ctx()) == Decision(DEFAULT)


def test_invalid_stored_rule_is_skipped_not_raised() -> None:
    rules = compile_rules(
        [
            Rule("bad", "geo", 9, {"countries": ["ZZ"]}, TARGET),
            Rule("ok", "device", 1, {"device_types": ["mobile"]}, TARGET),
        ]
    )
    assert rules.skipped == ("bad",)
    assert [r.id for r in rules.rules] == ["ok"]


def test_needs_device_and_geo() -> None:
    device = Rule("d", "device", 0, {"os": ["ios"]}, TARGET)
    geo = Rule("g", "geo", 0, {"countries": ["US"]}, TARGET)
    lang = Rule("l", "language", 0, {"languages": ["en"]}, TARGET)
    assert not needs_device(compile_rules([lang])) and not needs_geo(compile_rules([lang]))
    assert needs_device(compile_rules([device, lang])) and not needs_geo(compile_rules([device]))
    assert needs_geo(compile_rules([geo])) and not needs_device(compile_rules([geo]))


# --- A/B ------------------------------------------------------------------------------------------

AB = {
    "variants": [
        {"id": "a", "url": "https://example.com/a", "weight": 1},
        {"id": "b", "url": "https://example.com/b", "weight": 1},
    ]
}


def test_ab_test_is_sticky_and_reports_the_variant() -> None:
    rules = compile_rules([Rule("ab", "ab_test", 0, AB, "")])
    first = evaluate(rules, DEFAULT, ctx(visitor_id="visitor-1"))
    assert first.rule_id == "ab" and first.variant in ("a", "b")
    assert first.destination == f"https://example.com/{first.variant}"
    for hour in range(24):
        assert evaluate(rules, DEFAULT, ctx(visitor_id="visitor-1", now=at(hour))) == first


def test_ab_cookie_assignment_wins_unless_variant_was_paused() -> None:
    variants = [Variant("a", "https://example.com/a", 1), Variant("b", "https://example.com/b", 0)]
    visitor = "v"
    assert choose_variant(variants, visitor, "r", assigned="a").id == "a"
    assert choose_variant(variants, visitor, "r", assigned="b").id == "a"  # b has weight 0 now
    assert choose_variant(variants, visitor, "r", assigned="gone").id == "a"
    rules = compile_rules([Rule("ab", "ab_test", 0, AB, "")])
    for assigned in ("a", "b"):
        context = ctx(visitor_id="x", ab_assigned={"ab": assigned})
        assert evaluate(rules, DEFAULT, context).variant == assigned


def test_ab_zero_weight_variant_never_chosen() -> None:
    variants = [Variant("a", "https://a.example", 0), Variant("b", "https://b.example", 3)]
    assert {choose_variant(variants, f"v{i}", "r").id for i in range(500)} == {"b"}


def test_ab_anonymous_visitors_are_spread() -> None:
    rules = compile_rules([Rule("ab", "ab_test", 0, AB, "")])
    seen = {evaluate(rules, DEFAULT, ctx(now=at(12, m))).variant for m in range(60)}
    assert seen == {"a", "b"}


def test_ab_balancing_needs_enough_data_and_real_drift() -> None:
    variants = [Variant("a", "https://a.example", 1), Variant("b", "https://b.example", 1)]
    assert balanced_shares(variants, None) is None
    assert balanced_shares(variants, {"a": 90, "b": 10}) is None  # too few observations
    assert balanced_shares(variants, {"a": 5050, "b": 4950}) is None  # within tolerance
    shares = balanced_shares(variants, {"a": 6000, "b": 4000})
    assert shares == pytest.approx([0.4, 0.6])
    assert BALANCE_MIN_OBSERVED <= 10_000


def test_ab_balancing_moves_only_from_over_to_under_served() -> None:
    variants = [Variant("a", "https://a.example", 1), Variant("b", "https://b.example", 1)]
    observed = {"a": 7000, "b": 3000}
    before = [choose_variant(variants, f"v{i}", "r").id for i in range(4000)]
    after = [choose_variant(variants, f"v{i}", "r", observed).id for i in range(4000)]
    assert all(b == "a" or a == "b" for b, a in zip(before, after, strict=True))
    assert after.count("b") / len(after) == pytest.approx(0.7, abs=0.03)


def test_ab_destination_url_is_optional() -> None:
    assert validate_rule("ab_test", AB, None, None) == AB
    assert validate_rule("ab_test", AB, "", None) == AB


# --- validation -----------------------------------------------------------------------------------


def test_validate_rule_normalizes() -> None:
    assert validate_rule("geo", {"countries": ["us", "US", "fr"]}, TARGET, None) == {
        "countries": ["US", "FR"]
    }
    assert validate_rule("device", {"device_types": ["Mobile"], "os": [" iOS "]}, TARGET, 3) == {
        "device_types": ["mobile"],
        "os": ["ios"],
    }
    assert validate_rule(
        "time",
        {"weekdays": ["sun", 0, "monday"], "hours": [{"start": "22:00", "end": "02:00"}]},
        TARGET,
        None,
    ) == {"timezone": "UTC", "weekdays": [0, 6], "hours": [{"start": "22:00", "end": "02:00"}]}
    assert validate_rule("referrer", {"hosts": ["*.Example.COM."]}, TARGET, None) == {
        "hosts": ["*.example.com"]
    }
    assert validate_rule("language", {"languages": ["pt_BR", "en"]}, TARGET, None) == {
        "languages": ["pt-br", "en"]
    }


@pytest.mark.parametrize(
    ("rule_type", "conditions", "field"),
    [
        ("device", {}, "conditions"),
        ("device", {"device_types": ["phone"]}, "conditions.device_types[0]"),
        ("device", {"device_types": []}, "conditions.device_types"),
        ("device", {"os": "ios"}, "conditions.os"),
        ("device", {"browsers": ["chrome", 3]}, "conditions.browsers[1]"),
        ("device", {"os": ["ios"], "colour": "red"}, "conditions.colour"),
        ("geo", {"countries": ["US", "FR", "XX"]}, "conditions.countries[2]"),
        ("geo", {"countries": ["USA"]}, "conditions.countries[0]"),
        ("geo", {"exclude": True}, "conditions"),
        ("geo", {"countries": ["US"], "exclude": "yes"}, "conditions.exclude"),
        ("geo", {"cities": [""]}, "conditions.cities[0]"),
        ("time", {"timezone": "Mars/Olympus", "weekdays": [0]}, "conditions.timezone"),
        ("time", {"timezone": "../etc/passwd", "weekdays": [0]}, "conditions.timezone"),
        ("time", {"timezone": "UTC"}, "conditions"),
        ("time", {"weekdays": [7]}, "conditions.weekdays[0]"),
        ("time", {"weekdays": ["mon", "funday"]}, "conditions.weekdays[1]"),
        ("time", {"weekdays": [True]}, "conditions.weekdays[0]"),
        ("time", {"hours": [{"start": "9:00", "end": "17:00"}]}, "conditions.hours[0].start"),
        ("time", {"hours": [{"start": "09:00", "end": "24:00"}]}, "conditions.hours[0].end"),
        ("time", {"hours": [{"start": "09:00", "end": "09:00"}]}, "conditions.hours[0].end"),
        ("time", {"hours": [{"start": "09:00"}]}, "conditions.hours[0].end"),
        ("time", {"hours": [{"start": "09:00", "end": "10:00", "tz": "x"}]}, "conditions.hours[0].tz"),
        ("time", {"hours": ["09:00-10:00"]}, "conditions.hours[0]"),
        ("time", {"start": "yesterday"}, "conditions.start"),
        ("time", {"start": "2025-06-02", "end": "2025-06-01"}, "conditions.end"),
        ("time", {"end": "9999-12-31"}, "conditions.end"),
        ("referrer", {"hosts": ["exa mple.com"]}, "conditions.hosts[0]"),
        ("referrer", {"hosts": ["*"]}, "conditions.hosts[0]"),
        ("referrer", {"hosts": ["a.*.com"]}, "conditions.hosts[0]"),
        ("referrer", {"pattern": "("}, "conditions.pattern"),
        ("referrer", {"pattern": "(a+)+$"}, "conditions.pattern"),
        ("referrer", {"pattern": "(a|aa)*b"}, "conditions.pattern"),
        ("referrer", {"pattern": r"(a)\1"}, "conditions.pattern"),
        ("referrer", {"pattern": "a" * 257}, "conditions.pattern"),
        ("referrer", {"pattern": ""}, "conditions.pattern"),
        ("referrer", {"direct": False}, "conditions.direct"),
        ("language", {"languages": ["english"]}, "conditions.languages[0]"),
        ("language", {"languages": ["en", "*"]}, "conditions.languages[1]"),
        ("language", {"languages": []}, "conditions.languages"),
        ("ab_test", {"variants": []}, "conditions.variants"),
        (
            "ab_test",
            {"variants": [{"id": "a", "url": "https://a.example", "weight": 0}]},
            "conditions.variants",
        ),
        (
            "ab_test",
            {"variants": [{"id": "a", "url": "https://a.example", "weight": -1}]},
            "conditions.variants[0].weight",
        ),
        (
            "ab_test",
            {"variants": [{"id": "a", "url": "https://a.example", "weight": 1.5}]},
            "conditions.variants[0].weight",
        ),
        (
            "ab_test",
            {"variants": [{"id": "a", "url": "ftp://a.example", "weight": 1}]},
            "conditions.variants[0].url",
        ),
        (
            "ab_test",
            {"variants": [{"id": "", "url": "https://a.example", "weight": 1}]},
            "conditions.variants[0].id",
        ),
        ("ab_test", {"variants": [{"id": "a", "url": "https://a.example"}]}, "conditions.variants[0].weight"),
        (
            "ab_test",
            {"variants": [{"id": "a", "url": "https://a.example", "weight": 1}] * 2},
            "conditions.variants[1].id",
        ),
        ("ab_test", {"variants": ["a"]}, "conditions.variants[0]"),
    ],
)
def test_invalid_conditions_name_the_field(rule_type: str, conditions: dict[str, Any], field: str) -> None:
    assert invalid_field(rule_type, conditions) == field


def test_invalid_rule_level_fields() -> None:
    assert invalid_field("weather", {}) == "rule_type"
    assert invalid_field("geo", ["US"]) == "conditions"
    assert invalid_field("geo", {"countries": ["US"]}, destination=None) == "destination_url"
    assert invalid_field("geo", {"countries": ["US"]}, destination="javascript:alert(1)") == "destination_url"
    assert (
        invalid_field("geo", {"countries": ["US"]}, destination="https://exa mple.com") == "destination_url"
    )
    assert invalid_field("geo", {"countries": ["US"]}, destination="http://[::1") == "destination_url"
    assert invalid_field("geo", {"countries": ["US"]}, weight=-1) == "weight"
    assert invalid_field("geo", {"countries": ["US"]}, weight=True) == "weight"
    assert invalid_field("ab_test", AB, destination="not a url") == "destination_url"


def test_request_context_field_order_is_what_the_redirect_passes() -> None:
    """api.redirect.rule_decision builds RequestContext positionally (the hot path): a field
    added or moved must be added or moved there too."""
    from dataclasses import fields

    assert [f.name for f in fields(RequestContext)] == [
        "now", "visitor_id", "device_type", "os", "browser", "country", "region", "city",
        "referer", "accept_language", "ab_assigned",
    ]  # fmt: skip
