"""The rule catalogue: every rule anybuild knows, in one tuple."""

from __future__ import annotations

from anybuild.diagnose.model import Rule
from anybuild.diagnose.rules_dockerfile import DOCKERFILE_RULES
from anybuild.diagnose.rules_environment import ENVIRONMENT_RULES
from anybuild.diagnose.rules_more import MORE_RULES
from anybuild.diagnose.rules_registry import REGISTRY_RULES
from anybuild.diagnose.rules_runtime import RUNTIME_RULES

__all__ = ["RULES", "rule_by_id"]

RULES: tuple[Rule, ...] = (
    MORE_RULES + ENVIRONMENT_RULES + RUNTIME_RULES + REGISTRY_RULES + DOCKERFILE_RULES
)


def rule_by_id(rule_id: str) -> Rule:
    for rule in RULES:
        if rule.id == rule_id:
            return rule
    raise KeyError(rule_id)
