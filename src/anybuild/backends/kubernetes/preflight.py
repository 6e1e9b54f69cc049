"""Before anything is created: the server answers, and this identity may do what a build needs.

Each permission is asked with a SelfSubjectAccessReview, so the answer is the
API server's own (RBAC, webhooks), not a guess from a kubeconfig. A missing
one is reported with the exact Role rule to add.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from anybuild.backends.kubernetes.client import Cluster, ClusterError

__all__ = ["BUILD_RULES", "EXEC_RULE", "SECRET_RULES", "Preflight", "Rule", "preflight", "role_rules"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    verb: str
    resource: str
    group: str = ""
    subresource: str = ""

    @property
    def resource_name(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource

    def __str__(self) -> str:
        return f"{self.verb} {self.resource_name}" + (f" ({self.group})" if self.group else "")


BUILD_RULES: tuple[Rule, ...] = (
    Rule(verb="create", resource="jobs", group="batch"),
    Rule(verb="delete", resource="jobs", group="batch"),
    Rule(verb="list", resource="jobs", group="batch"),
    Rule(verb="get", resource="pods"),
    Rule(verb="list", resource="pods"),
    Rule(verb="watch", resource="pods"),
    Rule(verb="get", resource="pods", subresource="log"),
    Rule(verb="list", resource="events"),
)
SECRET_RULES: tuple[Rule, ...] = (
    Rule(verb="create", resource="secrets"),
    Rule(verb="delete", resource="secrets"),
    Rule(verb="list", resource="secrets"),
)
EXEC_RULE = Rule(verb="create", resource="pods", subresource="exec")


def role_rules(rules: Sequence[Rule]) -> str:
    """The Role rules (YAML) that grant *rules*, grouped by API group and resource."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for rule in rules:
        grouped.setdefault((rule.group, rule.resource_name), []).append(rule.verb)
    lines = []
    for (group, resource), verbs in grouped.items():
        lines += [f'- apiGroups: ["{group}"]', f'  resources: ["{resource}"]',
                  "  verbs: [" + ", ".join(f'"{v}"' for v in dict.fromkeys(verbs)) + "]"]
    return "\n".join(lines)


@dataclass(frozen=True, slots=True, kw_only=True)
class Preflight:
    where: str
    namespace: str
    server_version: str
    allowed: tuple[Rule, ...]
    denied: tuple[Rule, ...]

    @property
    def exec_allowed(self) -> bool:
        return EXEC_RULE in self.allowed

    def to_dict(self) -> dict[str, Any]:
        return {"where": self.where, "namespace": self.namespace, "server_version": self.server_version,
                "allowed": [str(r) for r in self.allowed], "denied": [str(r) for r in self.denied]}


def _review(cluster: Cluster, rule: Rule) -> bool:
    attributes = {"namespace": cluster.namespace, "verb": rule.verb, "group": rule.group, "resource": rule.resource}
    if rule.subresource:
        attributes["subresource"] = rule.subresource
    answer = cluster.request("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", body={
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": attributes}})
    return bool((answer.get("status") or {}).get("allowed"))


def preflight(cluster: Cluster, rules: Sequence[Rule]) -> Preflight:
    """The server's version and which of *rules* (plus exec) this identity holds."""
    version = cluster.request("GET", "/version", timeout=10.0)
    allowed: list[Rule] = []
    denied: list[Rule] = []
    for rule in (*rules, EXEC_RULE):
        (allowed if _review(cluster, rule) else denied).append(rule)
    return Preflight(where=cluster.description, namespace=cluster.namespace,
                     server_version=str(version.get("gitVersion") or "?"), allowed=tuple(allowed),
                     denied=tuple(denied))


def require(result: Preflight, rules: Sequence[Rule]) -> None:
    """Raise, with the Role rules to add, when one of *rules* is denied."""
    missing = [r for r in rules if r in result.denied]
    if not missing:
        return
    names = ", ".join(str(r) for r in missing)
    raise ClusterError(
        f"{result.where}: this identity may not {names} in the namespace {result.namespace}; nothing was created",
        status=403, reason="Forbidden",
        hint=f"add to the Role bound to you in {result.namespace}:\n{role_rules(missing)}\n"
             "(docs/backends/kubernetes.md has the whole Role)")
