"""--cache-to / --cache-from through a real registry: a fresh data directory reuses a RUN layer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from anybuild.builder.cache import StepStore
from tests.builder.test_cache_build import build, make_context

# The RUN writes random bytes: its layer differs each time it really runs, so reuse is visible.
DOCKERFILE = """\
FROM busybox:1.36
RUN head -c 4096 /dev/urandom > /random
COPY a.txt /
CMD ["cat", "/a.txt"]
"""


@pytest.fixture
def busybox(base_images: Any) -> dict[str, str]:
    return {"busybox:1.36": f"oci-layout://{base_images.busybox_layout}:1.36"}


def uploads(registry: Any, since: int) -> list[str]:
    """Paths of blob uploads completed after the first *since* requests."""
    return [r.path for r in registry.requests()[since:] if r.method == "PUT" and "/blobs/uploads/" in r.path
            and r.status == 201]


def test_cache_registry_fresh_data_dir_reuses_run_layer(tmp_path: Path, busybox: dict[str, str],
                                                        registry: Any) -> None:
    context = make_context(tmp_path / "ctx", DOCKERFILE)
    cache_repo = f"{registry.host}/cache/w1"
    image = f"{registry.host}/cache/app:1"
    insecure = (registry.host,)
    first, sink = build(context, busybox, tmp_path / "machine-a", tags=(image,), push=True,
                        insecure_registries=insecure, cache_to=cache_repo)
    assert any(line == f"exported 3 cache entries to {cache_repo}" for line in sink.lines)

    mark = len(registry.requests())
    second, _ = build(context, busybox, tmp_path / "machine-b", tags=(image,), push=True,
                      insecure_registries=insecure, cache_from=(cache_repo,))
    assert [s.cached for s in second.steps[1:]] == [True, True, True]
    assert second.digest == first.digest
    assert uploads(registry, mark) == []  # every blob, the RUN layer included, was already there
    assert StepStore(tmp_path / "machine-b" / "cache" / "steps").verify() == []

    mark = len(registry.requests())  # control: without the cache the RUN runs again and its layer is new
    third, _ = build(context, busybox, tmp_path / "machine-c", tags=(image,), push=True,
                     insecure_registries=insecure)
    assert third.cache_hits == 0
    assert third.digest != first.digest
    assert len(uploads(registry, mark)) >= 2  # the new RUN layer and the config


def test_cache_registry_missing_entry_is_a_miss(tmp_path: Path, busybox: dict[str, str], registry: Any) -> None:
    context = make_context(tmp_path / "ctx", DOCKERFILE)
    result, _ = build(context, busybox, tmp_path / "data", insecure_registries=(registry.host,),
                      cache_from=(f"{registry.host}/cache/empty",))
    assert result.cache_hits == 0
