"""Plans and their limits: the one table every quota check reads (pure, no I/O).

Other code asks `limits_for(plan)` or calls `check_quota(plan, resource, current)` before it adds
one more of something; None in the table means unlimited.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Literal

from engine.errors import QuotaExceeded, ValidationFailed


class Plan(StrEnum):
    FREE = "free"
    PRO = "pro"
    BUSINESS = "business"
    ENTERPRISE = "enterprise"


@dataclass(frozen=True, slots=True)
class PlanLimits:
    links_per_month: int | None
    clicks_per_month: int | None
    custom_domains: int | None
    members: int | None
    api_requests_per_minute: int
    retention_days: int


PLANS: MappingProxyType[Plan, PlanLimits] = MappingProxyType(
    {
        #                      links/mo  clicks/mo     domains members  api/min  retention
        Plan.FREE: PlanLimits(50, 5_000, 0, 1, 60, 30),
        Plan.PRO: PlanLimits(1_000, 100_000, 3, 5, 600, 365),
        Plan.BUSINESS: PlanLimits(10_000, 1_000_000, 20, 25, 3_000, 730),
        Plan.ENTERPRISE: PlanLimits(None, None, None, None, 10_000, 1_825),
    }
)
PAID_PLANS = (Plan.PRO, Plan.BUSINESS, Plan.ENTERPRISE)

Resource = Literal["links_per_month", "clicks_per_month", "custom_domains", "members"]


def parse_plan(value: str, field: str = "plan") -> Plan:
    try:
        return Plan(value)
    except ValueError:
        raise ValidationFailed(f"unknown plan {value!r}", field=field) from None


def limits_for(plan: str | Plan) -> PlanLimits:
    """The limits of a plan; an unknown stored plan falls back to free (the safe side)."""
    try:
        return PLANS[Plan(plan)]
    except ValueError:
        return PLANS[Plan.FREE]


def within_quota(plan: str | Plan, resource: Resource, current: int, adding: int = 1) -> bool:
    limit: int | None = getattr(limits_for(plan), resource)
    return limit is None or current + adding <= limit


def check_quota(plan: str | Plan, resource: Resource, current: int, adding: int = 1) -> None:
    """Raise QuotaExceeded (HTTP 402) unless `current + adding` fits the plan's limit."""
    if not within_quota(plan, resource, current, adding):
        limit = getattr(limits_for(plan), resource)
        raise QuotaExceeded(
            f"the {plan} plan allows {limit} {resource.replace('_', ' ')}; upgrade to add more",
            field=resource,
        )
