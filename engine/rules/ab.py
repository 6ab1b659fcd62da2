"""Sticky, self-balancing A/B variant selection.

A visitor's variant comes from a hash of (rule id, visitor id) placed on the cumulative weight
line, so the same visitor gets the same variant on every request. When the split the worker
observed drifts from the targets by more than `BALANCE_TOLERANCE`, part of each over-served
variant's segment is handed to the under-served ones: only visitors hashed into those parts move,
and a visitor who carries a known assignment (a cookie) never moves.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
from collections.abc import Mapping, Sequence
from typing import Final

from engine.rules.models import Variant

# Below this many observed visits the split is mostly noise; beyond this drift we correct.
BALANCE_MIN_OBSERVED: Final = 500
BALANCE_TOLERANCE: Final = 0.02

_HASH_SPACE: Final = 1 << 64


_HASH_STATE: Final = hashlib.blake2b(digest_size=8)  # copied per hash: no keyword parsing per call
# Per variants tuple (by identity, the tuple kept to check it): total weight and cumulative weights.
_CUMULATIVE: dict[int, tuple[Sequence[Variant], int, list[int]]] = {}
_CUMULATIVE_SIZE: Final = 4096


def visitor_hash(rule_id: str, visitor_id: str) -> int:
    """A uniform 64-bit integer for (rule, visitor); the rule id keeps tests independent."""
    state = _HASH_STATE.copy()
    state.update(f"{len(rule_id)}:{rule_id}:{visitor_id}".encode())
    return int.from_bytes(state.digest(), "big")


def _weights(variants: Sequence[Variant]) -> tuple[int, list[int]]:
    """(total weight, cumulative weights) of a rule's variants, computed once per tuple (the
    compiled rules keep theirs for as long as the link is cached)."""
    cached = _CUMULATIVE.get(id(variants))
    if cached is not None and cached[0] is variants:
        return cached[1], cached[2]
    cumulative = list(itertools.accumulate(variant.weight for variant in variants))
    total = cumulative[-1] if cumulative else 0
    if isinstance(variants, tuple):  # immutable: safe to remember
        if len(_CUMULATIVE) >= _CUMULATIVE_SIZE:
            _CUMULATIVE.clear()
        _CUMULATIVE[id(variants)] = (variants, total, cumulative)
    return total, cumulative


def choose_variant(
    variants: Sequence[Variant],
    visitor_id: str,
    rule_id: str,
    observed: Mapping[str, int] | None = None,
    assigned: str | None = None,
) -> Variant:
    """The variant for this visitor.

    `assigned` (a previously stored variant id) wins while that variant still has weight.
    `observed` (visits per variant id) shifts cookieless visitors toward under-served variants.
    """
    if assigned is not None:
        for variant in variants:
            if variant.id == assigned and variant.weight > 0:
                return variant
    total, cumulative = _weights(variants)
    if total <= 0:
        raise ValueError("variants need a positive total weight")
    point = visitor_hash(rule_id, visitor_id)
    shares = balanced_shares(variants, observed)
    if shares is None:
        # Exact integer arithmetic: the point lands in [0, total) on the cumulative weight line.
        return variants[bisect.bisect_right(cumulative, (point * total) >> 64)]
    targets = [variant.weight / total for variant in variants]
    return variants[_remap(point / _HASH_SPACE, targets, shares)]


def balanced_shares(variants: Sequence[Variant], observed: Mapping[str, int] | None) -> list[float] | None:
    """Shares for new assignments that steer the observed split back to the targets, or None
    when no correction is due (no data, too little data, or drift within tolerance).

    Each share is `2 * target - observed` (clipped at 0, renormalized): a variant 5 points behind
    gets 5 points more of the new traffic until the observed split is back within tolerance.
    """
    if not observed:
        return None
    counts = [_count(observed.get(variant.id)) for variant in variants]
    seen = sum(counts)
    if seen < BALANCE_MIN_OBSERVED:
        return None
    total = sum(variant.weight for variant in variants)
    targets = [variant.weight / total for variant in variants]
    actual = [count / seen for count in counts]
    if max(abs(t - a) for t, a in zip(targets, actual, strict=True)) <= BALANCE_TOLERANCE:
        return None
    raw = [max(0.0, 2 * t - a) for t, a in zip(targets, actual, strict=True)]
    scale = sum(raw)
    return [r / scale for r in raw]


def _count(value: object) -> int:
    return value if isinstance(value, int) and value > 0 else 0


def _remap(point: float, targets: Sequence[float], shares: Sequence[float]) -> int:
    """Index of the variant for `point` in [0, 1) when `shares` replace `targets`.

    Each variant keeps the first min(target, share) of its own segment; the rest of the
    over-served segments, laid end to end, is dealt to the under-served variants in order.
    """
    start = 0.0
    freed_before = 0.0
    landed = max(i for i, t in enumerate(targets) if t > 0)  # float rounding at the far end
    for i, target in enumerate(targets):
        if target > 0 and point < start + target:
            landed = i
            break
        freed_before += max(0.0, target - shares[i])
        start += target
    else:
        start -= targets[landed]
        freed_before -= max(0.0, targets[landed] - shares[landed])
    offset = point - start
    kept = min(targets[landed], shares[landed])
    if offset < kept:
        return landed
    position = freed_before + (offset - kept)
    gained = 0.0
    gainer = landed
    for j, (target, share) in enumerate(zip(targets, shares, strict=True)):
        if share > target:
            gained += share - target
            gainer = j
            if position < gained:
                return j
    return gainer
