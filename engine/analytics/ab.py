"""A/B test results: per-variant counts, the leading variant and how sure we are that it leads.

LinkRift sees clicks, not what a visitor does on the destination, so the success measure is the
one outcome it observes per visitor: coming back. A variant's *return rate* is the share of its
unique (human) visitors who clicked the link again within the window. Variants are sticky (a
visitor keeps their variant, engine/rules/ab.py), so each visitor is a trial of exactly one
variant. Each variant's rate gets a Beta(1 + returning, 1 + visitors - returning) posterior
(uniform prior); the probability that a variant is the best is

    P(i best) = ∫ f_i(x) · Π_{j≠i} F_j(x) dx

(f = posterior density, F = its CDF), integrated numerically on a grid around the posteriors'
mass. The leader is the variant with the highest probability; it is *significant* at 95 %.
Pure functions, no I/O (docs/analytics.md, "A/B tests").
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

SIGNIFICANCE: Final = 0.95
GRID_POINTS: Final = 4001
# Half-width of the integration range, in posterior standard deviations: the Beta mass beyond
# 12 sd is far below the precision reported.
_SPREAD: Final = 12.0


@dataclass(frozen=True, slots=True)
class VariantCounts:
    """Human clicks of one (rule, variant) in a window; `returning_visitors` clicked twice or more."""

    rule_id: str
    variant: str
    clicks: int
    unique_visitors: int
    returning_visitors: int


def _beta_logpdf(x: float, a: float, b: float, log_norm: float) -> float:
    left = 0.0 if a == 1 else (a - 1) * math.log(x) if x > 0 else -math.inf
    right = 0.0 if b == 1 else (b - 1) * math.log1p(-x) if x < 1 else -math.inf
    return left + right - log_norm


def probability_best(arms: Sequence[tuple[int, int]]) -> list[float]:
    """For arms given as (successes, trials): the posterior probability that each has the
    highest success rate (Beta(1 + s, 1 + n - s) posteriors). Sums to 1."""
    if not arms:
        return []
    if len(arms) == 1:
        return [1.0]
    params = []
    for successes, trials in arms:
        if not 0 <= successes <= trials:
            raise ValueError("successes must be between 0 and trials")
        a, b = 1.0 + successes, 1.0 + trials - successes
        params.append((a, b, math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)))
    lo, hi = 1.0, 0.0
    for a, b, _ in params:
        mean = a / (a + b)
        sd = math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
        lo, hi = min(lo, mean - _SPREAD * sd), max(hi, mean + _SPREAD * sd)
    lo, hi = max(0.0, lo), min(1.0, hi)
    step = (hi - lo) / (GRID_POINTS - 1)
    grid = [lo + i * step for i in range(GRID_POINTS)]
    densities: list[list[float]] = []
    cdfs: list[list[float]] = []
    for a, b, log_norm in params:
        pdf = [math.exp(_beta_logpdf(x, a, b, log_norm)) for x in grid]
        cdf = [0.0]
        for i in range(1, GRID_POINTS):
            cdf.append(cdf[-1] + (pdf[i - 1] + pdf[i]) * step / 2)
        mass = cdf[-1] or 1.0
        densities.append([p / mass for p in pdf])
        cdfs.append([min(1.0, c / mass) for c in cdf])
    k = len(params)
    # Products of every other arm's CDF, via prefix and suffix products (k·N instead of k²·N).
    prefix = [[1.0] * GRID_POINTS]
    for j in range(k - 1):
        prefix.append([p * c for p, c in zip(prefix[-1], cdfs[j], strict=True)])
    suffix = [[1.0] * GRID_POINTS]
    for j in range(k - 1, 0, -1):
        suffix.append([s * c for s, c in zip(suffix[-1], cdfs[j], strict=True)])
    suffix.reverse()
    raw = []
    for i in range(k):
        f = [d * p * s for d, p, s in zip(densities[i], prefix[i], suffix[i], strict=True)]
        raw.append(sum((f[n - 1] + f[n]) * step / 2 for n in range(1, GRID_POINTS)))
    total = sum(raw)
    return [r / total for r in raw] if total > 0 else [1.0 / k] * k


def ab_tests(rules: Iterable[Mapping[str, Any]], counts: Iterable[VariantCounts]) -> list[dict[str, Any]]:
    """One result per A/B rule of the link, each variant with its counts, share and probability.

    `rules` are the link's `ab_test` rule rows (id, conditions.variants, is_active); variants
    seen in the clicks but no longer configured (and rules since deleted) are reported too, with
    `weight` null, so the window's clicks are all accounted for.
    """
    by_rule: dict[str, dict[str, VariantCounts]] = {}
    for row in counts:
        by_rule.setdefault(row.rule_id, {})[row.variant] = row
    results = []
    seen_rules = set()
    for rule in rules:
        rule_id = str(rule["id"])
        seen_rules.add(rule_id)
        configured = [(str(v["id"]), str(v["url"]), int(v["weight"])) for v in rule["conditions"]["variants"]]
        results.append(_test(rule_id, bool(rule["is_active"]), configured, by_rule.get(rule_id, {})))
    for rule_id in sorted(set(by_rule) - seen_rules):
        results.append(_test(rule_id, False, [], by_rule[rule_id], deleted=True))
    return results


def _test(
    rule_id: str,
    active: bool,
    configured: list[tuple[str, str, int]],
    observed: Mapping[str, VariantCounts],
    *,
    deleted: bool = False,
) -> dict[str, Any]:
    weights = {vid: weight for vid, _, weight in configured}
    urls = {vid: url for vid, url, _ in configured}
    order = [vid for vid, _, _ in configured] + sorted(set(observed) - set(weights))
    empty = VariantCounts(rule_id, "", 0, 0, 0)
    rows = [observed.get(vid, empty) for vid in order]
    clicks = sum(r.clicks for r in rows)
    total_weight = sum(weights.values())
    visitors = sum(r.unique_visitors for r in rows)
    # A variant without visitors has no evidence (its posterior is the flat prior), and one removed
    # from the rule is no longer an option: neither competes. A leader needs two contenders.
    contenders = [i for i, r in enumerate(rows) if r.unique_visitors > 0 and (deleted or order[i] in weights)]
    probabilities: list[float | None] = [None] * len(rows)
    if len(contenders) > 1:
        arms = [(rows[i].returning_visitors, rows[i].unique_visitors) for i in contenders]
        for i, chance in zip(contenders, probability_best(arms), strict=True):
            probabilities[i] = chance
    variants = []
    for vid, row, probability in zip(order, rows, probabilities, strict=True):
        weight = weights.get(vid)
        variants.append(
            {
                "id": vid,
                "url": urls.get(vid),
                "weight": weight,
                "expected_share": round(weight / total_weight, 4)
                if weight is not None and total_weight
                else None,
                "clicks": row.clicks,
                "unique_visitors": row.unique_visitors,
                "share": round(row.clicks / clicks, 4) if clicks else 0.0,
                "returning_visitors": row.returning_visitors,
                "return_rate": round(row.returning_visitors / row.unique_visitors, 4)
                if row.unique_visitors
                else 0.0,
                "probability_best": round(probability, 4) if probability is not None else None,
            }
        )
    leader = None
    confidence = None
    if len(contenders) > 1:
        best = max(contenders, key=lambda i: (probabilities[i] or 0.0, -i))
        leader, confidence = order[best], round(probabilities[best] or 0.0, 4)
    return {
        "rule_id": rule_id,
        "is_active": active,
        "deleted": deleted,
        "clicks": clicks,
        "unique_visitors": visitors,
        "variants": variants,
        "leader": leader,
        "confidence": confidence,
        "significant": confidence is not None and confidence >= SIGNIFICANCE,
    }
