"""The step cache of the built-in builder.

:mod:`.key` (pure step keys), :mod:`.store` (the local store shared by
concurrent builds), :mod:`.registry` (``--cache-to`` / ``--cache-from``) and
:mod:`.steps` (the executor's view: look up before a step, record after).
"""

from anybuild.builder.cache.key import base_key, step_key
from anybuild.builder.cache.steps import StepCache
from anybuild.builder.cache.store import CacheEntry, PruneResult, StepStore, StoredEntry

__all__ = ["CacheEntry", "PruneResult", "StepCache", "StepStore", "StoredEntry", "base_key", "step_key"]
