"""The fixture corpus: real logs (and a few marked -published) per rule, and near-misses.

tests/diagnose/logs/<rule-id>/*.log must be diagnosed with <rule-id> first;
tests/diagnose/logs/near-miss/<rule-id>--*.log must not fire <rule-id> at all.
A sibling ``<name>.facts.json`` holds the environment facts given with the log.
Most logs were captured on a real machine by bench/diagnose_corpus.py.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from anybuild.diagnose import RULES, Role, diagnose_log

sys.path.insert(0, str(Path(__file__).parent))

LOGS = Path(__file__).parent / "logs"
PLACEHOLDER = re.compile(r"\{[a-z_]+\}")
RULE_IDS = sorted(rule.id for rule in RULES)
CAUSE_FIXTURES = sorted(p for p in LOGS.glob("*/*.log") if p.parent.name != "near-miss")
NEAR_MISSES = sorted((LOGS / "near-miss").glob("*.log"))


def _facts(log: Path) -> dict[str, object] | None:
    path = log.with_name(log.name.removesuffix(".log") + ".facts.json")
    return json.loads(path.read_text()) if path.exists() else None


def _read(log: Path) -> list[str]:
    return log.read_text(encoding="utf-8", errors="replace").splitlines()


def _corpus_roots() -> dict[str, int]:
    """Rule id -> how many tuning-part thread-corpus cases it is the root cause of."""
    from corpus_data import load_corpus

    roots: dict[str, int] = {}
    for case in load_corpus():
        if case.part == "tuning":
            found = diagnose_log(case.log.splitlines())
            roots[found[0].rule_id] = roots.get(found[0].rule_id, 0) + 1
    return roots


CORPUS_ROOTS = _corpus_roots()


@pytest.mark.parametrize("rule_id", RULE_IDS)
def test_fixtures_each_rule_has_two_triggers_and_a_near_miss(rule_id: str) -> None:
    """Lab-captured rules: two logs and a near-miss; rules learnt from threads: two real cases."""
    triggers = list((LOGS / rule_id).glob("*.log"))
    near = list((LOGS / "near-miss").glob(f"{rule_id}--*.log"))
    if not triggers and rule_id not in ("anybuild-internal-error", "sandbox-setup"):
        assert CORPUS_ROOTS.get(rule_id, 0) >= 1, f"{rule_id}: no tuning-part thread-corpus case"
        return
    if rule_id in ("anybuild-internal-error", "sandbox-setup"):
        return  # anybuild's own failures: covered by tests/diagnose/test_own_lines.py
    assert len(triggers) >= 2, f"{rule_id}: {len(triggers)} trigger fixtures"
    assert near, f"{rule_id}: no near-miss fixture"


def test_fixtures_directories_name_known_rules() -> None:
    dirs = {p.name for p in LOGS.iterdir() if p.is_dir()} - {"near-miss"}
    assert dirs <= set(RULE_IDS)
    assert {p.name.split("--")[0] for p in NEAR_MISSES} <= set(RULE_IDS)


def test_fixtures_most_are_real_captures() -> None:
    published = [p for p in CAUSE_FIXTURES + NEAR_MISSES if p.stem.endswith("-published")]
    assert len(published) * 3 < len(CAUSE_FIXTURES) + len(NEAR_MISSES)


@pytest.mark.parametrize("log", CAUSE_FIXTURES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_fixture_log_rule_dir_is_root_cause(log: Path) -> None:
    diagnoses = diagnose_log(_read(log), _facts(log))
    assert diagnoses, "no diagnosis"
    root = diagnoses[0]
    assert root.role is Role.ROOT_CAUSE
    assert root.rule_id == log.parent.name, [(d.rule_id, d.role.value) for d in diagnoses]
    assert root.evidence and all(e.text for e in root.evidence)
    assert not PLACEHOLDER.search(root.cause) and not PLACEHOLDER.search(root.remedy)


@pytest.mark.parametrize("log", NEAR_MISSES, ids=lambda p: p.stem)
def test_fixture_near_miss_rule_does_not_fire(log: Path) -> None:
    rule_id = log.name.split("--")[0]
    fired = [d.rule_id for d in diagnose_log(_read(log), _facts(log))]
    assert rule_id not in fired
