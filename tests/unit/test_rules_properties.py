"""Property tests for the rule evaluator: A/B split and stickiness, balancing, ordering, totality."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from engine.rules import (
    BALANCE_MIN_OBSERVED,
    BALANCE_TOLERANCE,
    RequestContext,
    Rule,
    Variant,
    balanced_shares,
    choose_variant,
    compile_rules,
    evaluate,
    validate_rule,
)

DEFAULT = "https://example.com/default"
VISITORS = [f"visitor-{i}" for i in range(10_000)]
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HEAVY = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])

rule_ids = st.text(alphabet="abcdef0123456789-", min_size=1, max_size=36)
weights = st.lists(st.integers(1, 100), min_size=2, max_size=5)


def make_variants(ws: list[int]) -> list[Variant]:
    return [Variant(f"v{i}", f"https://example.com/{i}", w) for i, w in enumerate(ws)]


def split(variants: list[Variant], rule_id: str, observed: dict[str, int] | None = None) -> dict[str, float]:
    counts = dict.fromkeys((v.id for v in variants), 0)
    for visitor in VISITORS:
        counts[choose_variant(variants, visitor, rule_id, observed).id] += 1
    return {k: c / len(VISITORS) for k, c in counts.items()}


# --- A/B ------------------------------------------------------------------------------------------


@HEAVY
@given(weights, rule_ids)
def test_split_is_within_two_points_of_target(ws: list[int], rule_id: str) -> None:
    variants = make_variants(ws)
    shares = split(variants, rule_id)
    for variant in variants:
        assert abs(shares[variant.id] - variant.weight / sum(ws)) <= 0.02


@FAST
@given(
    weights,
    rule_ids,
    st.text(max_size=40),
    st.one_of(st.none(), st.lists(st.integers(0, 10_000), min_size=5, max_size=5)),
)
def test_same_visitor_same_variant(
    ws: list[int], rule_id: str, visitor: str, counts: list[int] | None
) -> None:
    variants = make_variants(ws)
    observed = None if counts is None else {v.id: c for v, c in zip(variants, counts, strict=False)}
    first = choose_variant(variants, visitor, rule_id, observed)
    assert all(choose_variant(variants, visitor, rule_id, observed) == first for _ in range(3))
    assert choose_variant(variants, visitor, rule_id, observed, assigned=first.id) == first


@HEAVY
@given(weights, rule_ids, st.data())
def test_balancing_moves_new_visitors_toward_under_served(
    ws: list[int], rule_id: str, data: st.DataObject
) -> None:
    variants = make_variants(ws)
    total = sum(ws)
    # Over-serve one variant by at least the tolerance plus a margin.
    over = data.draw(st.integers(0, len(ws) - 1))
    target = ws[over] / total
    observed_share = data.draw(st.floats(min(1.0, target + BALANCE_TOLERANCE + 0.03), 1.0))
    assume(observed_share > target + BALANCE_TOLERANCE)  # not when it already holds ~all weight
    seen = 20_000
    over_count = round(observed_share * seen)
    rest = seen - over_count
    others = [i for i in range(len(ws)) if i != over]
    observed = {f"v{i}": rest * ws[i] // (total - ws[over]) for i in others}
    observed[f"v{over}"] = over_count
    assert sum(observed.values()) >= BALANCE_MIN_OBSERVED
    shares = balanced_shares(variants, observed)
    assert shares is not None

    before = [choose_variant(variants, v, rule_id).id for v in VISITORS[:1000]]
    after = [choose_variant(variants, v, rule_id, observed).id for v in VISITORS[:1000]]
    assert after.count(f"v{over}") < before.count(f"v{over}")
    losers = {v.id for v, s in zip(variants, shares, strict=True) if s < v.weight / total}
    gainers = {v.id for v, s in zip(variants, shares, strict=True) if s > v.weight / total}
    assert f"v{over}" in losers
    for old, new in zip(before, after, strict=True):
        assert old == new or (old in losers and new in gainers)


@FAST
@given(weights, st.dictionaries(st.sampled_from([f"v{i}" for i in range(5)]), st.integers(0, 5000)))
def test_balanced_shares_are_a_distribution(ws: list[int], observed: dict[str, int]) -> None:
    shares = balanced_shares(make_variants(ws), observed)
    if shares is not None:
        assert abs(sum(shares) - 1) < 1e-9
        assert all(s >= 0 for s in shares)


# --- ordering -------------------------------------------------------------------------------------

COUNTRIES = ["US", "FR", "DE", "JP"]


@FAST
@given(
    st.lists(
        st.tuples(
            st.integers(-5, 5),
            st.lists(st.sampled_from(COUNTRIES), min_size=1, max_size=3),
            st.booleans(),
        ),
        max_size=12,
    ),
    st.permutations(range(12)),
    st.sampled_from([*COUNTRIES, ""]),
)
def test_first_match_wins_by_priority_then_id(
    specs: list[tuple[int, list[str], bool]], order: list[int], country: str
) -> None:
    rules = [
        Rule(
            f"r{order[i]:02d}",
            "geo",
            priority,
            {"countries": countries},
            f"https://example.com/{i}",
            None,
            active,
        )
        for i, (priority, countries, active) in enumerate(specs)
    ]
    candidates = [r for r in rules if r.is_active and country in r.conditions["countries"]]
    expected = min(candidates, key=lambda r: (-r.priority, r.id), default=None)
    decision = evaluate(compile_rules(rules), DEFAULT, RequestContext(now=datetime.now(UTC), country=country))
    if expected is None:
        assert decision.destination == DEFAULT and decision.rule_id == ""
    else:
        assert (decision.rule_id, decision.destination) == (expected.id, expected.destination_url)


# --- totality -------------------------------------------------------------------------------------

short_text = st.text(max_size=12).filter(str.strip)
clock = st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.integers(0, 59))
window = st.fixed_dictionaries({"start": clock, "end": clock}).filter(lambda w: w["start"] != w["end"])
day = st.dates(min_value=datetime(2000, 1, 1).date(), max_value=datetime(2100, 1, 1).date())

condition_sets: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "device": st.fixed_dictionaries(
        {"device_types": st.lists(st.sampled_from(["desktop", "mobile", "tablet"]), min_size=1)},
        optional={"os": st.lists(short_text, min_size=1, max_size=3)},
    ),
    "geo": st.fixed_dictionaries(
        {"countries": st.lists(st.sampled_from(COUNTRIES), min_size=1)},
        optional={"cities": st.lists(short_text, min_size=1, max_size=3), "exclude": st.booleans()},
    ),
    "time": st.fixed_dictionaries(
        {"hours": st.lists(window, min_size=1, max_size=3)},
        optional={
            "timezone": st.sampled_from(["UTC", "Asia/Tokyo", "America/St_Johns", "Pacific/Kiritimati"]),
            "weekdays": st.lists(st.integers(0, 6), min_size=1),
            "start": day.map(lambda d: d.isoformat()),
        },
    ),
    "referrer": st.fixed_dictionaries(
        {},
        optional={
            "hosts": st.lists(st.sampled_from(["t.co", "*.google.com", "example.org"]), min_size=1),
            "pattern": st.sampled_from([r"news", r"^https?://[^/]*\.io/", r"(?i)ref=\w+"]),
            "direct": st.just(True),
        },
    ).filter(bool),
    "language": st.fixed_dictionaries(
        {"languages": st.lists(st.sampled_from(["en", "pt-BR", "zh-Hant"]), min_size=1)}
    ),
    "ab_test": st.lists(st.integers(0, 100), min_size=1, max_size=5)
    .filter(any)
    .map(
        lambda ws: {
            "variants": [
                {"id": f"v{i}", "url": f"https://x.example/{i}", "weight": w} for i, w in enumerate(ws)
            ]
        }
    ),
}


@st.composite
def valid_rules(draw: st.DrawFn) -> list[Rule]:
    rules = []
    for i in range(draw(st.integers(0, 6))):
        rule_type = draw(st.sampled_from(sorted(condition_sets)))
        conditions = draw(condition_sets[rule_type])
        validate_rule(rule_type, conditions, "https://example.com/t", None)
        rules.append(Rule(f"r{i}", rule_type, draw(st.integers(-3, 3)), conditions, "https://example.com/t"))
    return rules


contexts = st.builds(
    RequestContext,
    now=st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.sampled_from([UTC, None]),
    ),
    visitor_id=st.text(max_size=20),
    device_type=st.text(max_size=10),
    os=st.text(max_size=10),
    browser=st.text(max_size=10),
    country=st.text(max_size=3),
    region=st.text(max_size=5),
    city=st.text(max_size=10),
    referer=st.one_of(
        st.text(max_size=60), st.sampled_from(["http://[::1", "https://a.google.com/x", "//t.co"])
    ),
    accept_language=st.one_of(st.text(max_size=40), st.just("en;q=abc, pt-BR;q=0.7,*;q=0.1,zh-Hant;q=1.5")),
    ab_assigned=st.dictionaries(st.sampled_from(["r0", "r1", "r2"]), st.text(max_size=3), max_size=3),
)


@FAST
@given(
    valid_rules(),
    contexts,
    st.one_of(st.none(), st.dictionaries(st.just("r0"), st.just({"v0": 900, "v1": 10}))),
)
def test_validated_rules_never_make_evaluate_raise(
    rules: list[Rule], ctx: RequestContext, observed: dict[str, dict[str, int]] | None
) -> None:
    compiled = compile_rules(rules)
    assert compiled.skipped == ()
    decision = evaluate(compiled, DEFAULT, ctx, observed)
    allowed = {DEFAULT, "https://example.com/t"} | {
        v["url"] for r in rules if r.rule_type == "ab_test" for v in r.conditions["variants"]
    }
    assert decision.destination in allowed


@FAST
@given(st.datetimes(timezones=st.just(UTC)), st.integers(0, 23), st.integers(0, 23))
def test_wrapping_window_equals_union_of_two_plain_windows(now: datetime, start: int, end: int) -> None:
    assume(start != end)
    compiled = compile_rules(
        [
            Rule(
                "w",
                "time",
                0,
                {"hours": [{"start": f"{start:02d}:00", "end": f"{end:02d}:00"}]},
                "https://t.example",
            )
        ]
    )
    hit = evaluate(compiled, DEFAULT, RequestContext(now=now)).rule_id == "w"
    inside = start <= now.hour < end if start < end else now.hour >= start or now.hour < end
    assert hit == inside
