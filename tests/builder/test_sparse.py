"""Sparse materialisation (anybuild.builder.cache.sparse), held to the full unpack it stands in for.

For hand-made layer stacks with the hard parts (whiteouts, opaque directories, a directory replaced
by a file and back, symlinks out of the destination, hard links) and for seeded random ones: the
sparse unpack of a closure equals the full unpack restricted to that closure, and completing it gives
the full unpack, every entry's type, mode, owner, size, content, link target and mtime included. And a
real build that rebuilds after a cached RUN with the walk snapshotter (the sparse path) gives the image
a fresh data directory gives.
"""

from __future__ import annotations

import functools
import gzip
import io
import os
import random
import stat
import tarfile
from pathlib import Path
from typing import IO, Any

import pytest
import zstandard

from anybuild.builder.cache.sparse import LayerIndex, complete, headers, unpack_chosen
from anybuild.builder.inroot import RootDir
from anybuild.builder.rootfs import UnpackOptions, unpack_layer
from tests.builder.building import _read
from tests.builder.layers import E, tar_bytes
from tests.builder.test_build import EPOCH, build


def _tree(root: Path) -> dict[str, tuple[Any, ...]]:
    out: dict[str, tuple[Any, ...]] = {}
    for top, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            path = Path(top) / name
            info = path.lstat()
            rel = str(path.relative_to(root))
            content = path.read_bytes() if stat.S_ISREG(info.st_mode) else None
            link = os.readlink(path) if stat.S_ISLNK(info.st_mode) else None
            # a directory's mtime moves whenever a child comes in, in a full unpack as in a sparse one
            mtime = None if stat.S_ISDIR(info.st_mode) else info.st_mtime_ns
            out[rel] = (stat.S_IFMT(info.st_mode), stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid,
                        content, link, mtime, info.st_nlink if stat.S_ISREG(info.st_mode) else 0)
    return out


def _real_dir(root: Path, rel: str) -> bool:
    """*rel* is a directory with no symlink on the way (a host path never leaves *root*)."""
    path = root
    for part in rel.split("/"):
        path = path / part
        try:
            if not stat.S_ISDIR(path.lstat().st_mode):
                return False
        except FileNotFoundError:
            return False
    return True


def _openers(blobs: list[bytes]) -> list[Any]:
    return [functools.partial(io.BytesIO, blob) for blob in blobs]


def _full(blobs: list[bytes], where: Path) -> dict[str, tuple[Any, ...]]:
    where.mkdir(parents=True)
    with RootDir.open(where) as root:
        for blob in blobs:
            unpack_layer(io.BytesIO(blob), root, UnpackOptions.for_current_process())
    return _tree(where)


def _check(blobs: list[bytes], reach: list[str], work: Path) -> set[str] | None:
    """Sparse then complete against full; the closure (None: the index declined)."""
    full = _full(blobs, work / "full")
    index = LayerIndex.read(_openers(blobs))
    wanted = index.closure(reach)
    if wanted is None:
        return None
    sparse = work / "sparse"
    sparse.mkdir()
    options = UnpackOptions.for_current_process()
    with RootDir.open(sparse) as root:
        unpack_chosen(_openers(blobs), index, root, options, wanted.__contains__)
        part = _tree(sparse)
        expected = {rel: entry for rel, entry in full.items() if rel in wanted}
        # hard-link counts differ while a partner is not there yet; the rest must be equal
        assert {k: v[:-1] for k, v in part.items()} == {k: v[:-1] for k, v in expected.items()}
        # a step writes in the sparse part; then the rest comes in, and the step's files stay
        touched: list[str] = []
        for rel in sorted(wanted):
            if _real_dir(sparse, rel):
                (sparse / rel / "written-by-step").write_text(rel)
                touched.append(rel)
        after_step = _tree(sparse)
        times = {rel: (sparse / rel).lstat().st_mtime_ns for rel in touched}
        complete(_openers(blobs), index, wanted, root, options)
    whole = _tree(sparse)
    for rel in touched:
        assert whole.pop(f"{rel}/written-by-step") == after_step[f"{rel}/written-by-step"]
        assert (sparse / rel).lstat().st_mtime_ns == times[rel], f"{rel}: the step's mtime of the directory is kept"
        whole[rel] = full[rel]
    assert whole == full
    return wanted


def _layer(entries: list[E]) -> bytes:
    return tar_bytes(entries)


STACK = [
    _layer([E("etc", "dir"), E("etc/passwd", data=b"root:x:0:0::/root:/bin/sh\n"), E("etc/group", data=b"root:x:0:\n"),
            E("opt", "dir", mode=0o750), E("opt/gen", "dir"), *[E(f"opt/gen/f{i}", data=b"%d" % i) for i in range(50)],
            E("data", "dir", uid=7, gid=7), E("data/keep", data=b"k"), E("opt/link", "symlink", link="/data"),
            E("opt/rel", "symlink", link="../data/keep"), E("var", "dir"), E("var/old", "dir"),
            E("var/old/x", data=b"x"), E("big", data=b"b" * 10, mode=0o600), E("opt/hard", "link", link="big")]),
    _layer([E("opt/gen/.wh.f3"), E("var/old/.wh..wh..opq"), E("var/old/y", data=b"y"),
            E("data", "dir", mode=0o700, uid=7, gid=7), E("opt/app", "dir"), E("opt/app/old", data=b"1"),
            E("swap", "dir"), E("swap/inner", data=b"i")]),
    _layer([E("swap", data=b"now a file"), E("opt/app/old", data=b"2", mode=0o755), E(".wh.big"),
            E("big", data=b"new big")]),
]


def test_sparse_closure_follows_symlinks_and_hard_links_and_completes_to_the_full_unpack(tmp_path: Path) -> None:
    # the hard link opt/hard -> big is stale (big was replaced after the link): the index declines
    assert _check(STACK, ["/opt/app", "/etc/passwd", "/etc/group"], tmp_path / "a") is None
    stack = [STACK[0], STACK[1], _layer([E("swap", data=b"now a file"), E("opt/app/old", data=b"2", mode=0o755)])]
    wanted = _check(stack, ["/opt/app", "/etc/passwd", "/etc/group"], tmp_path / "b")
    assert wanted == {"opt", "opt/app", "opt/app/old", "etc", "etc/passwd", "etc/group"}
    # a destination through a symlink reaches its target, relative links resolve from their directory
    wanted = _check(stack, ["/opt/link/new", "/opt/rel"], tmp_path / "c")
    assert wanted is not None and {"data", "data/keep", "opt/link", "opt/rel"} <= wanted
    assert not any(rel.startswith("opt/gen") for rel in wanted)
    # a hard link pulls in its partner both ways
    wanted = _check(stack, ["/big"], tmp_path / "d")
    assert wanted is not None and {"big", "opt/hard"} <= wanted
    # opaque directories and whiteouts of lower entries
    wanted = _check(stack, ["/var/old"], tmp_path / "e")
    assert wanted == {"var", "var/old", "var/old/y"}
    # most of the image: the index declines
    assert _check(stack, ["/"], tmp_path / "f") is None


def _random_stack(rng: random.Random) -> list[bytes]:
    model: dict[str, str] = {}  # path -> kind, as the full unpack will leave it
    names = ["a", "b", "c", "d"]
    blobs = []
    for _layer_number in range(rng.randint(1, 4)):
        entries: list[E] = []
        for _ in range(rng.randint(1, 14)):
            depth = rng.randint(1, 3)
            path = "/".join(rng.choice(names) for _ in range(depth))
            parents = [path.rsplit("/", k)[0] for k in range(1, path.count("/") + 1)]
            if any(model.get(p, "dir") != "dir" for p in parents):
                continue  # never below a file or a symlink
            op = rng.choice(["dir", "file", "file", "symlink", "link", "whiteout", "opaque"])
            if op in ("whiteout", "opaque"):
                if entries or path not in model:
                    continue  # whiteouts come first in a layer, for what is there
                if op == "whiteout":
                    name = path.rsplit("/", 1)
                    entries.append(E("/".join([*name[:-1], ".wh." + name[-1]])))
                    for key in [k for k in model if k == path or k.startswith(path + "/")]:
                        del model[key]
                elif model[path] == "dir":
                    entries.append(E(f"{path}/.wh..wh..opq"))
                    for key in [k for k in model if k.startswith(path + "/")]:
                        del model[key]
                continue
            if op == "link":
                files = [k for k, kind in model.items()
                         if kind == "file" and k != path and not k.startswith(path + "/")]
                if not files:
                    continue
                op_target = rng.choice(files)
            for parent in parents:
                model[parent] = "dir"
            if model.get(path) == "dir" and op != "dir":
                for key in [k for k in model if k.startswith(path + "/")]:
                    del model[key]
            mode = rng.choice([0o755, 0o700, 0o644, 0o600])
            uid = rng.choice([0, 7, 1000])
            match op:
                case "dir":
                    entries.append(E(path, "dir", mode=mode, uid=uid, gid=uid, mtime=rng.randint(1, 10**9)))
                    model[path] = "dir"
                case "file":
                    entries.append(E(path, data=os.urandom(rng.randint(0, 30)), mode=mode, uid=uid, gid=uid,
                                     mtime=rng.randint(1, 10**9)))
                    model[path] = "file"
                case "symlink":
                    target = rng.choice(["/a", "../b", "c/d", "/a/b/c", "."])
                    entries.append(E(path, "symlink", link=target))
                    model[path] = "symlink"
                case "link":
                    entries.append(E(path, "link", link=op_target))
                    model[path] = "file"
                case _:
                    continue
        blobs.append(_layer(entries))
    return blobs


@pytest.mark.parametrize("seed", range(60))
def test_sparse_random_stacks_equal_the_full_unpack(seed: int, tmp_path: Path) -> None:
    rng = random.Random(seed)
    blobs = _random_stack(rng)
    reach = [rng.choice(["/a", "/b/c", "/c/d/a", "/d"]), "/etc/passwd"]
    wanted = _check(blobs, reach, tmp_path)
    index = LayerIndex.read(_openers(blobs))
    assert (wanted is None) == (index.unsafe is not None or index.closure(reach) is None)


def test_sparse_index_reads_layers_lazily_bottom_first() -> None:
    calls: list[int] = []

    def opener(n: int, blob: bytes) -> IO[bytes]:
        calls.append(n)
        return io.BytesIO(blob)

    LayerIndex.read([functools.partial(opener, n, blob) for n, blob in enumerate(STACK[:2])])
    assert calls == [0, 1]


@pytest.mark.root
def test_rebuild_after_a_cached_run_with_the_walk_snapshotter_equals_a_fresh_build(
        tmp_path: Path, base_images: Any) -> None:
    """The sparse path in a real build: cached RUN, then COPY (into a symlinked directory too), WORKDIR and
    a RUN that reads everything; the image equals a fresh data directory's build of the same context."""
    named = {"busybox:1.36": f"oci-layout://{base_images.busybox_layout}:1.36"}
    dockerfile = (
        "FROM busybox:1.36\n"
        "RUN mkdir -p /opt/gen /data && for i in $(seq 1 300); do echo $i > /opt/gen/f$i; done && "
        "ln -s /data /opt/link && ln /opt/gen/f1 /opt/hard && rm /opt/gen/f7 && "
        "echo app:x:1234:1234::/:/bin/sh >> /etc/passwd\n"
        "COPY x /opt/app/x\nCOPY --chown=app y /opt/link/y\nWORKDIR /srv/w\n"
        "RUN ls /opt/gen | wc -l > count && cat /data/y /opt/app/x /opt/hard > both && ls -ln /data > owners\n"
    )
    env = {"ANYBUILD_SNAPSHOTTER": "walk", "SOURCE_DATE_EPOCH": EPOCH}
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "y").write_text("y\n")
    trees = {}
    for name, data, steps in (("warm", tmp_path / "data", ("1\n", "2\n")), ("fresh", tmp_path / "fresh", ("2\n",))):
        for content in steps:
            (context / "x").write_text(content)
            out = tmp_path / f"{name}-{content.strip()}"
            out.mkdir()
            result, sink = build(context, named, data, dockerfile, env=env, output=f"docker-archive:{out}/image.tar")
            assert result.sandbox.endswith("+walk"), result.sandbox  # type: ignore[attr-defined]
        if name == "warm":
            assert any("CACHED" in line for line in sink.lines), sink.lines  # the RUN was a hit
        trees[name] = _read(out / "image.tar", out, []).tree
    root = tmp_path / "warm-2" / "root"
    assert (root / "srv/w/count").read_text().strip() == "299"
    assert (root / "srv/w/both").read_text() == "y\n2\n1\n"
    assert " 1234 " in (root / "srv/w/owners").read_text()
    assert trees["warm"] == trees["fresh"]


def _kind(member: tarfile.TarInfo) -> str:
    if member.isdir():
        return "dir"
    if member.isreg():
        return "file"
    if member.issym():
        return "symlink"
    return "hardlink" if member.islnk() else "other"


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT],
                         ids=["pax", "gnu", "ustar"])
@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_sparse_header_reader_reads_what_tarfile_reads(fmt: int, compression: str) -> None:
    long = "/".join(["d" * 60] * 3)  # over ustar's 100 bytes: prefix, pax path or a GNU long name
    entries = [("dir", "dir", ""), (f"{long if fmt != tarfile.USTAR_FORMAT else 'u' * 90}/f", "file", ""),
               ("dir/é-ünïcode", "file", ""), ("dir/link", "symlink", "../" + ("t" * 120 if fmt != tarfile.USTAR_FORMAT
                                                                              else "t")),
               ("dir/hard", "hardlink", "dir/é-ünïcode"), ("fifo", "other", ""), ("dir/.wh.gone", "file", ""),
               ("big", "file", "")]
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=fmt) as archive:
        for name, kind, link in entries:
            info = tarfile.TarInfo(name)
            info.type = {"dir": tarfile.DIRTYPE, "file": tarfile.REGTYPE, "symlink": tarfile.SYMTYPE,
                         "hardlink": tarfile.LNKTYPE, "other": tarfile.FIFOTYPE}[kind]
            info.linkname = link
            data = os.urandom(70_000 if name == "big" else 513 if kind == "file" else 0)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data) if data else None)
    blob = raw.getvalue()
    blob = gzip.compress(blob) if compression == "gzip" else \
        zstandard.ZstdCompressor().compress(blob) if compression == "zstd" else blob
    with tarfile.open(fileobj=io.BytesIO(blob if compression == "none" else
                                         gzip.decompress(blob) if compression == "gzip"
                                         else zstandard.ZstdDecompressor().decompress(blob, max_output_size=1 << 24)),
                      mode="r|") as archive:
        expected = [(m.name, _kind(m), m.linkname) for m in archive]
    assert list(headers(io.BytesIO(blob))) == expected
    assert len(expected) == len(entries)


def test_sparse_index_declines_what_the_reader_does_not_know(tmp_path: Path) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as archive:
        info = tarfile.TarInfo("sparse-file")
        info.type = tarfile.GNUTYPE_SPARSE
        archive.addfile(info)
    index = LayerIndex.read([functools.partial(io.BytesIO, raw.getvalue())])
    assert index.unsafe is not None and index.closure(["/x"]) is None
    truncated = tar_bytes([E("a", data=b"x" * 5000)])[:1024]
    index = LayerIndex.read([functools.partial(io.BytesIO, truncated)])
    assert index.unsafe is not None
