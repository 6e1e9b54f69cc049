"""Probes of the machine: where anybuild runs and what can build here."""

from __future__ import annotations

from anybuild.environment.facts import Fact, FactKey, Facts, FactValue, Topic, registry_credentials_key

__all__ = ["Fact", "FactKey", "FactValue", "Facts", "Topic", "registry_credentials_key"]
