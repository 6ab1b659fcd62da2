"""Redirect rules: write-time validation, compilation and the per-request evaluator.

Pure functions over plain data (see docs/rules.md), shared by the api and the workers.
"""

from engine.rules.ab import BALANCE_MIN_OBSERVED, BALANCE_TOLERANCE, balanced_shares, choose_variant
from engine.rules.conditions import validate_rule
from engine.rules.evaluator import (
    CompiledRule,
    CompiledRules,
    compile_rules,
    evaluate,
    needs_device,
    needs_geo,
    parse_accept_language,
)
from engine.rules.models import RULE_TYPES, Decision, RequestContext, Rule, RuleType, Variant

__all__ = [
    "BALANCE_MIN_OBSERVED",
    "BALANCE_TOLERANCE",
    "RULE_TYPES",
    "CompiledRule",
    "CompiledRules",
    "Decision",
    "RequestContext",
    "Rule",
    "RuleType",
    "Variant",
    "balanced_shares",
    "choose_variant",
    "compile_rules",
    "evaluate",
    "needs_device",
    "needs_geo",
    "parse_accept_language",
    "validate_rule",
]
