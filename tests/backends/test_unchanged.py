"""A rebuild + push with nothing changed is answered from its record, with one HEAD per base and per
tag; any change (a file, an argument, the base's tag, the pushed tag) goes to the real build (issue 23)."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

from anybuild.backends.base import BuildRequest, ListSink, SecretSpec
from anybuild.backends.builtin import BuiltinBackend
from anybuild.backends.unchanged import RACY_SECONDS, _keep_newest, forget, inputs_of
from anybuild.oci import LayoutStore
from anybuild.registry import Reference, RegistryClient
from tests.harness.bases import BaseImages
from tests.harness.registry import Registry

from ..oci.images import make_image

ANSWERED = "anybuild: nothing changed since the build of"


def _context(tmp_path: Path, base: str) -> Path:
    context = tmp_path / "ctx"
    (context / "app").mkdir(parents=True)
    (context / "Dockerfile").write_text(f"FROM {base}\nCOPY app/ /app/\nENV MODE=unchanged\n")
    (context / "app" / "main.txt").write_text("version 1\n")
    (context / "app" / "other.txt").write_text("other\n")
    return context


def _settle() -> None:
    """A record is written only for files older than the filesystem's clock tick allows to trust."""
    time.sleep(RACY_SECONDS + 0.2)


def test_unchanged_rebuild_is_two_heads_and_each_change_builds(
    tmp_path: Path, registry: Registry, base_images: BaseImages
) -> None:
    # A base of its own, so that its tag can be moved.
    base = f"{registry.host}/unchanged/base:1"
    with RegistryClient(insecure=frozenset({registry.host})) as client:
        client.copy_image(Reference.parse(base_images.busybox), Reference.parse(base),
                          LayoutStore.create(tmp_path / "scratch"))
    context = _context(tmp_path, base)
    tag = f"{registry.host}/unchanged/app:1"
    request = BuildRequest(context=context, dockerfile=context / "Dockerfile", tags=(tag,), push=True,
                           insecure_registries=(registry.host,))
    backend = BuiltinBackend(env={**os.environ, "ANYBUILD_DATA_DIR": str(tmp_path / "data")})
    _settle()

    first = backend.build(request, ListSink())
    assert first.digest is not None and first.bases == ((base, first.bases[0][1]),)
    assert list((tmp_path / "data" / "cache" / "unchanged").glob("*.json"))

    # Nothing changed: one HEAD for the base, one for the tag, nothing else.
    since = len(registry.requests())
    sink = ListSink()
    again = backend.build(request, sink)
    asked = [(r.method, r.path) for r in registry.requests()[since:]]
    assert asked == [("HEAD", "/v2/unchanged/base/manifests/1"), ("HEAD", "/v2/unchanged/app/manifests/1")]
    assert any(line.startswith(ANSWERED) for line in sink.lines)
    assert again.digest == first.digest and again.references == (tag,)
    assert [s.name for s in again.steps] == [s.name for s in first.steps]
    assert again.cache_hits == first.cache_hits

    # A file edited to the same size, its mtime put back: its ctime moved, so the real build runs.
    main = context / "app" / "main.txt"
    before = main.stat()
    main.write_text("version 2\n")
    os.utime(main, ns=(before.st_atime_ns, before.st_mtime_ns))
    sink = ListSink()
    edited = backend.build(request, sink)
    assert not any(line.startswith(ANSWERED) for line in sink.lines)
    assert edited.digest != first.digest
    _settle()
    backend.build(request, ListSink())  # recorded (the file is old enough now)

    # The tag pushed over by someone else: the real build pushes it back.
    other_store = LayoutStore.create(tmp_path / "other")
    other = make_image(other_store, [{"x": b"other"}], tag=None)
    with RegistryClient(insecure=frozenset({registry.host})) as client:
        client.push_image(other_store, other, Reference.parse(tag))
    sink = ListSink()
    pushed_back = backend.build(request, sink)
    assert not any(line.startswith(ANSWERED) for line in sink.lines)
    with RegistryClient(insecure=frozenset({registry.host})) as client:
        assert str(client.head_manifest(Reference.parse(tag))) == pushed_back.digest == edited.digest

    # The base's tag moved: the real build resolves it again.
    with RegistryClient(insecure=frozenset({registry.host})) as client:
        client.push_image(other_store, other, Reference.parse(base))
    sink = ListSink()
    rebased = backend.build(request, sink)
    assert not any(line.startswith(ANSWERED) for line in sink.lines)
    assert rebased.bases == ((base, str(other.digest)),)
    assert rebased.digest != edited.digest


def test_inputs_refused_where_the_builder_must_decide_and_keyed_by_everything(tmp_path: Path) -> None:
    context = _context(tmp_path, "busybox:1.36")
    env = {"ANYBUILD_DATA_DIR": str(tmp_path / "data")}
    request = BuildRequest(context=context, dockerfile=context / "Dockerfile", tags=("r.test/a:1",), push=True)
    settings = {"sandbox": None, "cache_from": (), "cache_to": None, "strict": False}
    got = inputs_of(request, env=env, settings=settings)
    assert got is not None and got.racy  # just written
    assert inputs_of(request, env=env, settings=settings, clock=lambda: time.time() + 60) == replace(got, racy=False)
    for refused in (replace(request, push=False), replace(request, output="oci:out"), replace(request, load=True),
                    replace(request, no_cache=True), replace(request, tags=()),
                    replace(request, secrets=(SecretSpec(id="s", env="S"),))):
        assert inputs_of(refused, env=env, settings=settings) is None
    assert inputs_of(request, env=env, settings={**settings, "cache_to": "r.test/cache"}) is None
    for remote in ("ADD https://example.com/x.tgz /x/\n", "ADD \\\n  https://example.com/x.tgz /x/\n",
                   "ARG URL\nADD ${URL} /x/\n", "ADD git@github.com:acme/x.git /x/\n"):
        (context / "Dockerfile").write_text(f"FROM busybox:1.36\n{remote}")
        assert inputs_of(request, env=env, settings=settings) is None, remote
    (context / "Dockerfile").write_text("FROM busybox:1.36\nADD app/ /app/\n")  # a local ADD: answered
    assert inputs_of(request, env=env, settings=settings) is not None
    (context / "Dockerfile").write_text("FROM busybox:1.36\nCOPY app/ /app/\n")
    key = inputs_of(request, env=env, settings=settings)
    assert key is not None and key.key != got.key
    for changed in (replace(request, build_args={"A": "1"}), replace(request, labels={"l": "v"}),
                    replace(request, target="x"), replace(request, tags=("r.test/a:2",))):
        other = inputs_of(changed, env=env, settings=settings)
        assert other is not None and other.key != key.key
    for other_env in ({**env, "SOURCE_DATE_EPOCH": "1"}, {**env, "ANYBUILD_SANDBOX": "proot"}):
        other = inputs_of(request, env=other_env, settings=settings)
        assert other is not None and other.key != key.key
    secret = inputs_of(request, env={**env, "ANYBUILD_REGISTRY_PASSWORD": "hunter2"}, settings=settings)
    assert secret is not None and secret.key == key.key  # a secret's value never enters the key
    (context / "app" / "new.txt").write_text("new\n")
    added = inputs_of(request, env=env, settings=settings)
    assert added is not None and added.key != key.key


def test_records_are_bounded_and_forgotten_by_prune(tmp_path: Path) -> None:
    records = tmp_path / "data" / "cache" / "unchanged"
    records.mkdir(parents=True)
    for index in range(5):
        (records / f"{index}.json").write_text("{}")
        os.utime(records / f"{index}.json", ns=(index * 10**9, index * 10**9))
    assert _keep_newest(records, 3) == 2
    assert sorted(p.name for p in records.glob("*.json")) == ["2.json", "3.json", "4.json"]
    assert forget({"ANYBUILD_DATA_DIR": str(tmp_path / "data")}) == 3
    assert list(records.glob("*.json")) == []
    assert forget({"ANYBUILD_DATA_DIR": str(tmp_path / "nowhere")}) == 0
