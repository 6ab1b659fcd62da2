"""Plan limits and quota checks (pure)."""

from __future__ import annotations

import itertools

import pytest

from engine.billing.plans import PLANS, Plan, check_quota, limits_for, parse_plan, within_quota
from engine.errors import QuotaExceeded, ValidationFailed


def test_every_plan_has_limits_and_they_grow() -> None:
    assert set(PLANS) == set(Plan)
    order = [Plan.FREE, Plan.PRO, Plan.BUSINESS]
    for lower, higher in itertools.pairwise(order):
        a, b = limits_for(lower), limits_for(higher)
        assert a.links_per_month is not None and b.links_per_month is not None
        assert a.links_per_month < b.links_per_month and a.retention_days < b.retention_days
    assert limits_for("enterprise").links_per_month is None


def test_check_quota_boundaries() -> None:
    limit = limits_for("free").links_per_month
    assert limit is not None
    check_quota("free", "links_per_month", limit - 1)
    with pytest.raises(QuotaExceeded) as exc:
        check_quota("free", "links_per_month", limit)
    assert exc.value.status == 402 and exc.value.field == "links_per_month"
    assert within_quota("enterprise", "clicks_per_month", 10**12)
    assert not within_quota("pro", "custom_domains", 3)


def test_unknown_plans() -> None:
    assert limits_for("platinum") == limits_for("free")
    with pytest.raises(ValidationFailed) as exc:
        parse_plan("platinum")
    assert exc.value.field == "plan"
