"""build_image end to end on an offline busybox base: outputs, secrets, failures, reproducibility, hostile bases."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
import time
from pathlib import Path

import pytest

from anybuild.backends.base import BuildRequest, ListSink, SecretSpec
from anybuild.builder.build import BuildEnvironment, build_image
from anybuild.errors import BuildFailed, ContextError, IntegrityError, UsageError
from anybuild.oci.layout import LayoutStore
from anybuild.oci.manifest import Manifest
from tests.builder.layers import E, tar_bytes
from tests.harness.oci import ImageConfig, Layer, write_layout

SECRET = "pa55w0rd-n0t-f0r-layers"
EPOCH = "1700000000"


@pytest.fixture
def busybox(base_images) -> dict[str, str]:
    return {"busybox:1.36": f"oci-layout://{base_images.busybox_layout}:1.36"}


def build(context: Path, named: dict[str, str], data: Path, dockerfile: str, *, env: dict[str, str] | None = None,
          **request: object) -> tuple[object, ListSink]:
    context.mkdir(parents=True, exist_ok=True)
    (context / "Dockerfile").write_text(dockerfile)
    sink = ListSink()
    environment = BuildEnvironment(env={**os.environ, "ANYBUILD_DATA_DIR": str(data), **(env or {})},
                                   named_images=named)
    result = build_image(BuildRequest(context=context, dockerfile=context / "Dockerfile", **request),  # type: ignore[arg-type]
                         sink, environment)
    return result, sink


def blobs_text(layout: Path) -> list[bytes]:
    """Every blob of a layout, layers decompressed."""
    out = []
    for blob in (layout / "blobs" / "sha256").iterdir():
        data = blob.read_bytes()
        out.append(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)
    return out


def test_build_image_oci_output_manifest_config_history(tmp_path: Path, busybox: dict[str, str]) -> None:
    result, sink = build(tmp_path / "ctx", busybox, tmp_path / "data",
                         "FROM busybox:1.36\nENV A=1\nRUN echo hi > /hi\nCMD [\"cat\", \"/hi\"]\n",
                         output=f"oci:{tmp_path / 'out'}", tags=("example.com/x/y:1",))
    store = LayoutStore.open(tmp_path / "out")
    entry = store.resolve("example.com/x/y:1")
    assert str(entry.digest) == result.digest  # type: ignore[attr-defined]
    manifest = Manifest.from_json(store.read_blob(entry))
    config = json.loads(store.read_blob(manifest.config))
    assert config["config"]["Cmd"] == ["cat", "/hi"]
    assert [h.get("empty_layer", False) for h in config["history"][-3:]] == [True, False, True]
    assert len(config["rootfs"]["diff_ids"]) == len(manifest.layers) == 2
    ran, _, snapshotter = result.sandbox.partition("+")  # type: ignore[attr-defined]
    assert ran in {"runc", "unshare", "chroot", "proot"}  # the sandbox that ran the RUN
    assert snapshotter in {"walk", "overlay"}
    assert any(line.startswith("anybuild: sandbox: ") for line in sink.lines)


def test_build_image_secret_in_no_blob_and_no_log(tmp_path: Path, busybox: dict[str, str]) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET)
    dockerfile = ("FROM busybox:1.36\n"
                  "RUN --mount=type=secret,id=pw cat /run/secrets/pw && cp /run/secrets/pw /copied-on-purpose "
                  "&& rm /copied-on-purpose && echo done > /marker\n"
                  "RUN --mount=type=secret,id=pw,required=true test -s /run/secrets/pw\n")
    _, sink = build(tmp_path / "ctx", busybox, tmp_path / "data", dockerfile, output=f"oci:{tmp_path / 'out'}",
                    secrets=(SecretSpec(id="pw", src=secret),))
    assert not [b for b in blobs_text(tmp_path / "out") if SECRET.encode() in b]
    assert SECRET not in "\n".join(sink.lines)
    assert any("***" in line for line in sink.lines)  # the cat printed it, redacted


SECRET_FILES = {  # id: the file's bytes
    "newline": b"first-s3cret-value\n",
    "bare": b"second-s3cret-value",
    "crlf": b"third-s3cret-value\r\n",
    "lines": b"-----BEGIN KEY-----\nfourth-s3cret-line-one\nfourth-s3cret-line-two\n-----END KEY-----\n",
}


def test_build_image_secret_files_masked_whatever_their_line_ends(tmp_path: Path, busybox: dict[str, str]) -> None:
    specs = []
    for name, data in SECRET_FILES.items():
        (tmp_path / name).write_bytes(data)
        specs.append(SecretSpec(id=name, src=tmp_path / name))
    mounts = " ".join(f"--mount=type=secret,id={name}" for name in SECRET_FILES)
    printing = " && ".join(f'cat /run/secrets/{n} && echo "[$(cat /run/secrets/{n})]" && od -c /run/secrets/{n} '
                           f"| head -1" for n in SECRET_FILES)
    _, sink = build(tmp_path / "ctx", busybox, tmp_path / "data",
                    f"FROM busybox:1.36\nRUN {mounts} {printing} && echo printed-all\n", secrets=tuple(specs))
    log = "\n".join(sink.lines)
    assert "printed-all" in log
    for data in SECRET_FILES.values():
        for line in data.decode().splitlines():
            if "s3cret" in line:
                assert line.strip() not in log, line
    assert log.count("***") >= 2 * len(SECRET_FILES)


def test_build_image_required_secret_missing_is_an_input_error(tmp_path: Path, busybox: dict[str, str]) -> None:
    with pytest.raises(UsageError, match="type=secret,id=pw is required, and no --secret gives it"):
        build(tmp_path / "ctx", busybox, tmp_path / "data",
              "FROM busybox:1.36\nRUN --mount=type=secret,id=pw,required=true true\n")


def test_build_image_failing_run_reports_line_command_code_tail(tmp_path: Path, busybox: dict[str, str]) -> None:
    dockerfile = "FROM busybox:1.36\nRUN echo fine\nRUN echo about to fail && ls /nope && echo never\n"
    with pytest.raises(BuildFailed) as caught:
        build(tmp_path / "ctx", busybox, tmp_path / "data", dockerfile)
    error = caught.value
    assert "Dockerfile:3" in error.message
    assert "exit code 1" in error.message
    assert error.diagnosis is not None
    assert error.diagnosis["line"] == 3
    assert error.diagnosis["command"] == "echo about to fail && ls /nope && echo never"
    assert error.diagnosis["exit_code"] == 1
    assert "about to fail" in error.diagnosis["tail"]
    assert any("/nope" in line for line in error.diagnosis["tail"])


def test_build_image_missing_copy_source_context_error(tmp_path: Path, busybox: dict[str, str]) -> None:
    with pytest.raises(ContextError, match="not-there"):
        build(tmp_path / "ctx", busybox, tmp_path / "data", "FROM busybox:1.36\nCOPY not-there /x\n")


def test_build_image_source_date_epoch_two_dirs_same_digest(tmp_path: Path, busybox: dict[str, str]) -> None:
    dockerfile = ("FROM busybox:1.36\nCOPY app /app\nRUN mkdir /out && cp -r /app /out/ && rm /bin/vi\n"
                  "WORKDIR /srv\nENV MODE=prod\n")
    digests = []
    for name in ("first", "second"):
        context = tmp_path / name / "somewhere" / "ctx"
        (context / "app").mkdir(parents=True)
        (context / "app" / "main.sh").write_text("#!/bin/sh\necho hi\n")
        (context / "app" / "main.sh").chmod(0o755)
        result, _ = build(context, busybox, tmp_path / f"data-{name}", dockerfile, env={"SOURCE_DATE_EPOCH": EPOCH},
                          output=f"oci:{tmp_path / name / 'out'}")
        digests.append(result.digest)  # type: ignore[attr-defined]
        time.sleep(1.1)  # a later second: file times differ, the epoch clamps them
    assert digests[0] == digests[1]


def test_build_image_without_epoch_times_differ_digest(tmp_path: Path, busybox: dict[str, str]) -> None:
    digests = set()
    for name in ("first", "second"):
        # each its own data directory: a rebuild from the cache would be the same image (dated by its steps)
        result, _ = build(tmp_path / name, busybox, tmp_path / f"data-{name}", "FROM busybox:1.36\nRUN touch /x\n")
        digests.add(result.digest)  # type: ignore[attr-defined]
        time.sleep(1.1)
    assert len(digests) == 2  # the reproducibility test above is not vacuous


def hostile_layout(path: Path, entries: list[E]) -> str:
    """An OCI layout whose only layer is *entries*; returns an oci-layout:// reference."""
    raw = tar_bytes(entries)
    layer = Layer(blob=gzip.compress(raw, mtime=0), diff_id="sha256:" + hashlib.sha256(raw).hexdigest(),
                  comment="hostile")
    write_layout(path, layers=[layer], config=ImageConfig(env=["PATH=/bin"], cmd=["sh"]), tags=["latest"])
    return f"oci-layout://{path}:latest"


def _busybox_layers(layout: Path) -> list[Layer]:
    store = LayoutStore.open(layout)
    manifest = Manifest.from_json(store.read_blob(store.resolve("1.36")))
    diff_ids = json.loads(store.read_blob(manifest.config))["rootfs"]["diff_ids"]
    return [Layer(blob=store.blob_path(d.digest).read_bytes(), diff_id=diff_id)
            for d, diff_id in zip(manifest.layers, diff_ids, strict=True)]


def test_build_image_hard_links_to_lower_layers_same_image_with_both_snapshotters(tmp_path: Path,
                                                                                   base_images) -> None:
    layers = _busybox_layers(base_images.busybox_layout)
    for entries in ([E("data", "dir", mode=0o755), E("data/big", data=b"payload", mode=0o640)],
                    [E("data/link", "link", link="data/big"), E("bin-link", "link", link="bin/busybox")]):
        raw = tar_bytes(entries)
        layers.append(Layer(blob=gzip.compress(raw, mtime=0), diff_id="sha256:" + hashlib.sha256(raw).hexdigest()))
    write_layout(tmp_path / "linked", layers=layers, config=ImageConfig(env=["PATH=/bin"], cmd=["sh"]),
                 tags=["latest"])
    named = {"linked:latest": f"oci-layout://{tmp_path / 'linked'}:latest"}
    dockerfile = ("FROM linked:latest\nRUN test \"$(cat /data/link)\" = payload && test -x /bin-link && "
                  "echo ran > /ran\n")
    digests = {}
    for snapshotter in ("walk", "overlay"):
        result, _ = build(tmp_path / "ctx", named, tmp_path / f"data-{snapshotter}", dockerfile,
                             env={"ANYBUILD_SNAPSHOTTER": snapshotter, "SOURCE_DATE_EPOCH": EPOCH})
        assert result.sandbox.endswith(f"+{snapshotter}"), result.sandbox  # type: ignore[attr-defined]
        digests[snapshotter] = result.digest  # type: ignore[attr-defined]
    assert digests["walk"] == digests["overlay"]


def test_build_image_hostile_base_refused_outside_unchanged(tmp_path: Path) -> None:
    victim_dir = tmp_path / "outside"
    victim_dir.mkdir()
    (victim_dir / "victim").write_text("precious")
    ref = hostile_layout(tmp_path / "hostile", [E("../../../../../../../../" + str(victim_dir)[1:] + "/victim",
                                                  data=b"pwned")])
    with pytest.raises(IntegrityError, match="outside the image root"):
        build(tmp_path / "ctx", {"evil:latest": ref}, tmp_path / "data", "FROM evil:latest\nRUN true\n")
    assert (victim_dir / "victim").read_text() == "precious"


def test_build_image_hostile_symlink_base_contained(tmp_path: Path, busybox: dict[str, str]) -> None:
    victim_dir = tmp_path / "outside"
    victim_dir.mkdir()
    (victim_dir / "victim").write_text("precious")
    ref = hostile_layout(tmp_path / "hostile", [E("escape", "symlink", link=str(victim_dir)),
                                                E("escape/victim", data=b"pwned"),
                                                E("up", "symlink", link="../../../../../../.."),
                                                E(f"up{victim_dir}/other", data=b"pwned")])
    build(tmp_path / "ctx", {"evil:latest": ref}, tmp_path / "data", "FROM evil:latest\n",
          output=f"oci:{tmp_path / 'out'}")
    assert sorted(os.listdir(victim_dir)) == ["victim"]
    assert (victim_dir / "victim").read_text() == "precious"
    shutil.rmtree(tmp_path / "out")


def test_build_image_interrupted_work_dir_removed(tmp_path: Path, busybox: dict[str, str]) -> None:
    data = tmp_path / "data"
    with pytest.raises(BuildFailed):
        build(tmp_path / "ctx", busybox, data, "FROM busybox:1.36\nRUN exit 3\n")
    assert list((data / "tmp").iterdir()) == []
    assert not [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if str(data) in line]


def test_build_image_layer_blobs_are_gzip_tars(tmp_path: Path, busybox: dict[str, str]) -> None:
    build(tmp_path / "ctx", busybox, tmp_path / "data", "FROM busybox:1.36\nRUN echo x > /x\n",
          output=f"oci:{tmp_path / 'out'}")
    store = LayoutStore.open(tmp_path / "out")
    manifest = Manifest.from_json(store.read_blob(store.resolve()))
    with store.open_blob(manifest.layers[-1].digest) as stream, \
            tarfile.open(fileobj=io.BytesIO(gzip.decompress(stream.read()))) as tar:
        assert tar.getnames() == ["x"]


@pytest.fixture
def http_server(tmp_path: Path):
    """A static file server on 127.0.0.1 (ADD URL tests)."""
    import functools
    import http.server
    import threading

    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))

    class Quiet(handler.func):  # type: ignore[name-defined,misc]
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_build_image_add_url_checksum_verified(tmp_path: Path, busybox: dict[str, str], http_server) -> None:
    root, url = http_server
    (root / "tool.sh").write_text("#!/bin/sh\necho tool\n")
    digest = "sha256:" + hashlib.sha256((root / "tool.sh").read_bytes()).hexdigest()
    build(tmp_path / "ctx", busybox, tmp_path / "data",
          f"FROM busybox:1.36\nADD --checksum={digest} {url}/tool.sh /opt/\n"
          "RUN test \"$(stat -c %a /opt/tool.sh)\" = 600\n",
          output=f"oci:{tmp_path / 'out'}")
    with pytest.raises(IntegrityError, match="does not match"):
        build(tmp_path / "ctx2", busybox, tmp_path / "data",
              f"FROM busybox:1.36\nADD --checksum=sha256:{'0' * 64} {url}/tool.sh /opt/\n")


def test_build_image_copy_exclude_skips_matches(tmp_path: Path, busybox: dict[str, str]) -> None:
    context = tmp_path / "ctx"
    (context / "src").mkdir(parents=True)
    (context / "src" / "keep.py").write_text("k")
    (context / "src" / "skip.log").write_text("s")
    build(context, busybox, tmp_path / "data",
          "FROM busybox:1.36\nCOPY --exclude=*.log src /app\nRUN test -f /app/keep.py && test ! -e /app/skip.log\n")


def test_build_image_push_to_registry_digest_served(tmp_path: Path, busybox: dict[str, str], registry) -> None:
    import httpx

    reference = f"{registry.host}/anybuild-test/pushed:1"
    result, _ = build(tmp_path / "ctx", busybox, tmp_path / "data", "FROM busybox:1.36\nRUN echo p > /p\n",
                      tags=(reference,), push=True, insecure_registries=(registry.host,))
    response = httpx.get(f"{registry.url}/v2/anybuild-test/pushed/manifests/1",
                         headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert response.status_code == 200
    assert response.headers["Docker-Content-Digest"] == result.digest  # type: ignore[attr-defined]
    assert result.references == (reference,)  # type: ignore[attr-defined]
