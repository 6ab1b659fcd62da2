"""A/B results: the probability-to-be-best integration against a closed form, and the report shape."""

from __future__ import annotations

import math

import pytest

from engine.analytics.ab import VariantCounts, ab_tests, probability_best


def _lbeta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _p_b_beats_a(sa: int, na: int, sb: int, nb: int) -> float:
    """Exact P(p_B > p_A) for Beta(1+s, 1+n-s) posteriors with integer parameters (Evan Miller)."""
    a_a, b_a, a_b, b_b = 1 + sa, 1 + na - sa, 1 + sb, 1 + nb - sb
    return sum(
        math.exp(_lbeta(a_a + i, b_b + b_a) - math.log(b_b + i) - _lbeta(1 + i, b_b) - _lbeta(a_a, b_a))
        for i in range(a_b)
    )


@pytest.mark.parametrize(
    ("sa", "na", "sb", "nb"),
    [
        (0, 0, 0, 0),
        (3, 10, 7, 10),
        (40, 400, 55, 410),
        (120, 1000, 118, 1000),
        (1, 2000, 9, 2000),
        (500, 800, 20, 30),
    ],
)
def test_two_arms_match_the_closed_form(sa: int, na: int, sb: int, nb: int) -> None:
    p_a, p_b = probability_best([(sa, na), (sb, nb)])
    assert p_b == pytest.approx(_p_b_beats_a(sa, na, sb, nb), abs=1e-3)
    assert p_a + p_b == pytest.approx(1.0)


def test_three_arms_sum_to_one_and_order_by_evidence() -> None:
    probs = probability_best([(10, 100), (30, 100), (20, 100)])
    assert sum(probs) == pytest.approx(1.0)
    assert probs[1] > 0.9 > probs[2] > probs[0]


def test_identical_arms_split_evenly() -> None:
    assert probability_best([(5, 50)] * 4) == pytest.approx([0.25] * 4, abs=1e-3)


def test_bad_counts_are_rejected() -> None:
    with pytest.raises(ValueError):
        probability_best([(5, 4), (1, 2)])


def _rule(rule_id: str, *variants: tuple[str, int]) -> dict[str, object]:
    return {
        "id": rule_id,
        "is_active": True,
        "conditions": {
            "variants": [{"id": v, "url": f"https://e.test/{v}", "weight": w} for v, w in variants]
        },
    }


def test_report_lists_configured_variants_with_shares_and_the_leader() -> None:
    counts = [
        VariantCounts("r1", "a", clicks=600, unique_visitors=500, returning_visitors=50),
        VariantCounts("r1", "b", clicks=900, unique_visitors=500, returning_visitors=150),
    ]
    [test] = ab_tests([_rule("r1", ("a", 1), ("b", 1), ("c", 2))], counts)
    assert [v["id"] for v in test["variants"]] == ["a", "b", "c"]
    a, b, c = test["variants"]
    assert (a["share"], b["share"], c["share"]) == (0.4, 0.6, 0.0)
    assert (a["expected_share"], c["expected_share"]) == (0.25, 0.5)
    assert (a["return_rate"], b["return_rate"], c["clicks"]) == (0.1, 0.3, 0)
    assert test["leader"] == "b" and test["significant"] and test["confidence"] > 0.99
    assert test["clicks"] == 1500 and test["unique_visitors"] == 1000
    assert c["probability_best"] is None  # no visitors, no evidence: not a contender


def test_no_visitors_means_no_leader_and_unconfigured_variants_are_kept() -> None:
    counts = [VariantCounts("gone", "x", clicks=3, unique_visitors=0, returning_visitors=0)]
    empty, deleted = ab_tests([_rule("r1", ("a", 1), ("b", 1))], counts)
    assert empty["leader"] is None and empty["confidence"] is None and not empty["significant"]
    assert deleted["deleted"] and deleted["variants"][0]["weight"] is None
    assert deleted["variants"][0]["clicks"] == 3
