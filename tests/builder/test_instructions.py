from __future__ import annotations

import os
from pathlib import Path

import pytest

from anybuild.builder.inroot import RootDir
from anybuild.builder.instructions.copy import CopyPlan, copy_into, expand_sources, parse_chmod
from anybuild.builder.instructions.metadata import apply_metadata, with_env, workdir_path
from anybuild.builder.instructions.run import run_argv
from anybuild.builder.users import parse_group, parse_passwd, resolve_chown, resolve_user
from anybuild.dockerfile.convert import parse_instructions
from anybuild.dockerfile.dockerignore import DockerIgnore
from anybuild.dockerfile.instructions import Run
from anybuild.dockerfile.parser import parse_dockerfile
from anybuild.errors import BuildFailed
from anybuild.oci.config import ContainerConfig


def instr(line: str):
    return parse_instructions(parse_dockerfile("FROM scratch\n" + line + "\n"))[1]


# -- metadata: pure config transforms --------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "field", "expected"),
    [
        ("ENV A=1 B=2", "env", ("PATH=/bin", "A=1", "B=2")),
        ("ENV PATH=/x", "env", ("PATH=/x",)),
        ("USER app:grp", "user", "app:grp"),
        ("WORKDIR /srv", "working_dir", "/srv"),
        ("EXPOSE 80 53/udp 8000-8001", "exposed_ports", ("53/udp", "80/tcp", "8000/tcp", "8001/tcp")),
        ("VOLUME /data /cache", "volumes", ("/cache", "/data")),
        ("CMD echo hi", "cmd", ("/bin/sh", "-c", "echo hi")),
        ('CMD ["a", "b"]', "cmd", ("a", "b")),
        ('ENTRYPOINT ["/e"]', "entrypoint", ("/e",)),
        ("STOPSIGNAL SIGKILL", "stop_signal", "SIGKILL"),
        ("LABEL a=b", "labels", {"a": "b"}),
    ],
    ids=["env", "env-replace", "user", "workdir", "expose", "volume", "cmd-shell", "cmd-exec", "entrypoint",
         "stopsignal", "label"],
)
def test_apply_metadata_instruction_config_changed(line: str, field: str, expected: object) -> None:
    config = ContainerConfig(env=("PATH=/bin",))
    result = apply_metadata(instr(line), config)
    assert getattr(result.config, field) == expected
    assert not result.filesystem


def test_apply_metadata_shell_changes_later_shell_form() -> None:
    config = apply_metadata(instr('SHELL ["/bin/bash", "-eu", "-c"]'), ContainerConfig()).config
    assert apply_metadata(instr("CMD run"), config).config.cmd == ("/bin/bash", "-eu", "-c", "run")


def test_apply_metadata_onbuild_healthcheck_in_extra() -> None:
    config = apply_metadata(instr("ONBUILD RUN echo x"), ContainerConfig()).config
    config = apply_metadata(instr("HEALTHCHECK --interval=5s CMD true"), config).config
    assert config.extra["OnBuild"] == ["RUN echo x"]
    assert config.extra["Healthcheck"] == {"Test": ["CMD-SHELL", "true"], "Interval": 5_000_000_000}


@pytest.mark.parametrize(("current", "path", "expected"),
                         [("", "app", "/app"), ("/a", "b/../c", "/a/c"), ("/a", "/abs", "/abs"), ("/", ".", "/")],
                         ids=["from-root", "relative", "absolute", "dot"])
def test_workdir_path_joined_and_cleaned(current: str, path: str, expected: str) -> None:
    assert workdir_path(current, path) == expected


def test_with_env_order_kept_new_appended() -> None:
    assert with_env(("A=1", "B=2"), {"A": "3", "C": "4"}) == ("A=3", "B=2", "C=4")


# -- RUN argv ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "argv"),
    [
        ("RUN echo hi", ("/bin/sh", "-c", "echo hi")),
        ('RUN ["echo", "hi"]', ("echo", "hi")),
        ("RUN <<EOF\necho one\necho two\nEOF", ("/bin/sh", "-c", "echo one\necho two\n")),
        ("RUN cat <<EOF > /f\nbody\nEOF", ("/bin/sh", "-c", "cat <<EOF > /f\nbody\nEOF")),
    ],
    ids=["shell", "exec", "heredoc-body", "heredoc-inline"],
)
def test_run_argv_forms(text: str, argv: tuple[str, ...]) -> None:
    run = parse_instructions(parse_dockerfile("FROM scratch\n" + text + "\n"))[1]
    assert isinstance(run, Run)
    assert run_argv(run, ("/bin/sh", "-c"))[0] == argv


def test_run_argv_heredoc_shebang_script_file() -> None:
    run = parse_instructions(parse_dockerfile("FROM scratch\nRUN <<EOF\n#!/bin/sh\necho x\nEOF\n"))[1]
    assert isinstance(run, Run)
    argv, files = run_argv(run, ("/bin/sh", "-c"))
    assert len(argv) == 1 and argv[0] in files
    assert files[argv[0]] == b"#!/bin/sh\necho x\n"


# -- users -------------------------------------------------------------------------------------------

PASSWD = "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n"
GROUP = "root:x:0:\ngrp:x:1001:\nextra:x:2000:app,other\n"


@pytest.fixture
def etc_root(tmp_path: Path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text(PASSWD)
    (tmp_path / "etc/group").write_text(GROUP)
    with RootDir.open(tmp_path) as root:
        yield root


def test_parse_passwd_group_malformed_lines_skipped() -> None:
    assert parse_passwd(PASSWD + "broken\n") == {"root": (0, 0), "app": (1000, 1001)}
    assert parse_group(GROUP)["extra"] == (2000, ("app", "other"))


@pytest.mark.parametrize(("spec", "uid", "gid", "groups"),
                         [("app", 1000, 1001, (1001, 2000)), ("1000", 1000, 1001, (1001, 2000)),
                          ("app:0", 1000, 0, (0,)), ("4242", 4242, 0, (0,)), ("", 0, 0, (0,))],
                         ids=["name", "uid-known", "name-group", "uid-unknown", "empty"])
def test_resolve_user_ids_from_image_files(etc_root: RootDir, spec: str, uid: int, gid: int,
                                           groups: tuple[int, ...]) -> None:
    ident = resolve_user(spec, etc_root)
    assert (ident.uid, ident.gid, ident.groups) == (uid, gid, groups)


@pytest.mark.parametrize(("spec", "expected"),
                         [("app", (1000, 1001)), ("55", (55, 55)), ("app:extra", (1000, 2000)), ("1:2", (1, 2)),
                          ("1000", (1000, 1000)), ("ghost", (0, 0)), ("ghost:grp", (0, 1001)),
                          ("4242:nogroup", (4242, 4242)), ("app:nogroup", (1000, 1001))],
                         ids=["name-primary-group", "uid-same-gid", "names", "numbers", "uid-known-same-gid",
                              "unknown-user-root", "unknown-user-known-group", "uid-unknown-group", "unknown-group"])
def test_resolve_chown_docker_rules(etc_root: RootDir, spec: str, expected: tuple[int, int]) -> None:
    # BuildKit's readUser: an unknown user is uid 0 (gid 0), an unknown group leaves the gid as it was
    assert resolve_chown(spec, etc_root) == expected


def test_resolve_user_unknown_name_build_failed_with_hint(etc_root: RootDir) -> None:
    with pytest.raises(BuildFailed, match="no user 'ghost'") as caught:
        resolve_user("ghost", etc_root)
    assert "useradd" in caught.value.hint


# -- COPY rules on real directories ------------------------------------------------------------------


@pytest.fixture
def trees(tmp_path: Path):
    ctx, dest = tmp_path / "ctx", tmp_path / "rootfs"
    (ctx / "dir/sub").mkdir(parents=True)
    (ctx / "dir/a.txt").write_text("a")
    (ctx / "dir/sub/b.txt").write_text("b")
    (ctx / "one.md").write_text("1")
    (ctx / "two.md").write_text("2")
    dest.mkdir()
    (dest / "etc").mkdir()
    (dest / "lib").symlink_to("/usr/lib")  # an absolute symlink: resolved inside the rootfs
    with RootDir.open(ctx) as src, RootDir.open(dest) as dst:
        yield src, dst, dest


def plan(dest: str, **kw: object) -> CopyPlan:
    return CopyPlan(dest=dest, dest_is_dir=dest.endswith("/"), owner=None, keep_owner=False, **kw)  # type: ignore[arg-type]


def names(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize(
    ("source", "dest", "expected"),
    [
        ("dir", "/d", {"d", "d/a.txt", "d/sub", "d/sub/b.txt"}),
        ("dir/a.txt", "/f", {"f"}),
        ("dir/a.txt", "/into/", {"into", "into/a.txt"}),
        ("dir/a.txt", "/etc", {"etc/a.txt"}),
        ("*.md", "/docs/", {"docs", "docs/one.md", "docs/two.md"}),
    ],
    ids=["dir-contents", "file-renamed", "file-into-slash", "file-into-existing-dir", "wildcard"],
)
def test_copy_into_docker_destination_rules(trees, source: str, dest: str, expected: set[str]) -> None:
    src, dst, dest_path = trees
    sources = expand_sources(src, source, ignored=lambda _r: False, what="COPY")
    copy_into(dst, sources, plan(dest))
    assert names(dest_path) - {"etc", "lib"} == expected | ({"etc/a.txt"} & expected)


def test_copy_into_through_absolute_symlink_stays_in_rootfs(trees, tmp_path: Path) -> None:
    src, dst, dest_path = trees
    copy_into(dst, expand_sources(src, "one.md", ignored=lambda _r: False, what="COPY"), plan("/lib/x/"))
    assert (dest_path / "usr/lib/x/one.md").read_text() == "1"
    assert not Path("/usr/lib/x/one.md").exists()


@pytest.mark.parametrize("existing", ["file", "directory", "symlink-out", "fifo"])
def test_copy_into_file_replaces_what_is_at_its_destination(trees, tmp_path: Path, existing: str) -> None:
    """Whatever the rootfs has at the file's path is replaced, never written through."""
    src, dst, dest_path = trees
    outside = tmp_path / "outside.txt"
    outside.write_text("host")
    (dest_path / "app").mkdir()
    target = dest_path / "app" / "one.md"
    if existing == "file":
        target.write_text("old and longer")
        target.chmod(0o600)
    elif existing == "directory":
        (target / "inner").mkdir(parents=True)
        (target / "inner" / "x").write_text("x")
    elif existing == "symlink-out":
        target.symlink_to(outside)
    else:
        os.mkfifo(target)
    (src.path / "one.md").chmod(0o640)
    os.utime(src.path / "one.md", ns=(1_000_000_000, 2_000_000_000))

    copy_into(dst, expand_sources(src, "one.md", ignored=lambda _r: False, what="COPY"), plan("/app/"))

    info = target.lstat()
    assert target.is_file() and not target.is_symlink()
    assert target.read_text() == "1"
    assert (info.st_mode & 0o7777, info.st_uid, info.st_gid, info.st_mtime_ns) == (0o640, 0, 0, 2_000_000_000)
    assert outside.read_text() == "host"


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_copy_into_a_full_filesystem_fails_not_a_short_file(trees, tmp_path: Path) -> None:
    """write(2) writes what fits and returns a short count; the copy must go on until ENOSPC, not
    leave a truncated file behind as if it were whole."""
    import errno
    import subprocess

    src, _, _ = trees
    (src.path / "big.bin").write_bytes(os.urandom(1024 * 1024))
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(small)], check=True)
    try:
        with RootDir.open(small) as dst, pytest.raises(OSError) as failed:
            copy_into(dst, expand_sources(src, "big.bin", ignored=lambda _r: False, what="COPY"), plan("/"))
        assert failed.value.errno == errno.ENOSPC
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_copy_into_chmod_and_owner_applied(trees) -> None:
    src, dst, dest_path = trees
    sources = expand_sources(src, "dir", ignored=lambda _r: False, what="COPY")
    copy_into(dst, sources, CopyPlan(dest="/d", dest_is_dir=False, owner=(7, 8), keep_owner=False, chmod=0o4700))
    info = (dest_path / "d/sub/b.txt").stat()
    assert (info.st_uid, info.st_gid, info.st_mode & 0o7777) == (7, 8, 0o700)
    assert (dest_path / "d").stat().st_mode & 0o777 == 0o755


def test_expand_sources_never_climb_above_the_context(trees) -> None:
    # BuildKit cleans "/" + source: ".." stops at the context root (moby TestBuildForbiddenContextPath)
    from anybuild.errors import ContextError

    src, _, _ = trees
    with pytest.raises(ContextError, match="not found"):
        expand_sources(src, "../etc/passwd", ignored=lambda _r: False, what="COPY")
    [one] = expand_sources(src, "../../one.md", ignored=lambda _r: False, what="COPY")
    assert (one.rel, one.name) == ("one.md", "one.md")
    [root] = expand_sources(src, "../../", ignored=lambda _r: False, what="COPY")
    assert root.rel == "."


def test_expand_sources_ignored_file_not_found(trees) -> None:
    from anybuild.errors import ContextError

    src, _, _ = trees
    with pytest.raises(ContextError, match="not found"):
        expand_sources(src, "one.md", ignored=lambda rel: rel.endswith(".md"), what="COPY")


@pytest.mark.parametrize(("value", "mode"), [("755", 0o755), ("0644", 0o644), (None, None)])
def test_parse_chmod_octal(value: str | None, mode: int | None) -> None:
    assert parse_chmod(value) == mode


def test_parse_chmod_symbolic_refused() -> None:
    with pytest.raises(BuildFailed, match="octal"):
        parse_chmod("u+x")


def test_copy_into_dangling_symlink_kept(trees) -> None:
    src, dst, dest_path = trees
    os.symlink("/nowhere", src.path / "dir" / "dangling")
    copy_into(dst, expand_sources(src, "dir", ignored=lambda _r: False, what="COPY"), plan("/d"))
    assert os.readlink(dest_path / "d/dangling") == "/nowhere"


def test_copy_into_keeps_hard_links_within_a_source(trees) -> None:
    # BuildKit's copier links a file whose inode it has already copied (tonistiigi/fsutil copy
    # getLinkSource); buildah's conformance case stage-container-as-source-plus-hardlinks
    src, dst, dest_path = trees
    os.link(src.path / "dir/a.txt", src.path / "dir/sub/a-link")
    os.link(src.path / "one.md", src.path / "dir/one-link")
    copy_into(dst, expand_sources(src, "dir", ignored=lambda _r: False, what="COPY"), plan("/d"))
    assert os.stat(dest_path / "d/a.txt").st_ino == os.stat(dest_path / "d/sub/a-link").st_ino
    assert os.stat(dest_path / "d/a.txt").st_nlink == 2
    assert os.stat(dest_path / "d/one-link").st_nlink == 1  # its other name was not copied
    copy_into(dst, expand_sources(src, "one.md", ignored=lambda _r: False, what="COPY")
              + expand_sources(src, "dir/one-link", ignored=lambda _r: False, what="COPY"), plan("/e/"))
    assert os.stat(dest_path / "e/one.md").st_ino != os.stat(dest_path / "e/one-link").st_ino  # two sources


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("dir/[^a].txt", set()),  # Go's negated class; dir/a.txt is the only .txt there
        ("dir/[!a].txt", {"x/a.txt"}),  # "!" is no negation in Go: the class holds "!" and "a"
        ("*/[a].txt", {"x/a.txt"}),
        ("**/sub/*.txt", {"x/b.txt"}),  # "**" is "*" in a COPY source (one component)
        ("link/sub/*", {"x/b.txt"}),  # through a symlinked directory
        ("nomatch*", set()),  # a wildcard that matches nothing copies nothing, and makes no /x
    ],
    ids=["negated-class", "bang-is-literal", "class", "double-star", "symlinked-dir", "empty-wildcard"],
)
def test_expand_sources_matches_as_go_filepath_match(trees, pattern: str, expected: set[str]) -> None:
    src, dst, dest_path = trees
    (src.path / "link").symlink_to("dir")
    copy_into(dst, expand_sources(src, pattern, ignored=lambda _r: False, what="COPY"), plan("/x/"))
    assert names(dest_path) - {"etc", "lib"} == (expected | {"x"} if expected else set())


def test_expand_sources_escaped_wildcard_is_a_plain_path(trees) -> None:
    from anybuild.errors import ContextError

    src, _, _ = trees
    (src.path / "a*b").write_text("star")
    with pytest.raises(ContextError, match="not found"):  # BuildKit looks for the name "a\*b"
        expand_sources(src, "a\\*b", ignored=lambda _r: False, what="COPY")


def test_copy_reincluded_file_brings_its_excluded_parent(trees) -> None:
    # .dockerignore "*" then "!dir/sub/b.txt": Docker's client sends dir and dir/sub (as they are) with b.txt
    src, dst, dest_path = trees
    (src.path / "dir").chmod(0o700)
    ignore = DockerIgnore(["*", "!dir/sub/b.txt"])
    copy_into(dst, expand_sources(src, ".", ignored=ignore.excluded, what="COPY"),
              plan("/", ignored=ignore.excluded))
    assert names(dest_path) - {"etc", "lib"} == {"dir", "dir/sub", "dir/sub/b.txt"}
    assert (dest_path / "dir").stat().st_mode & 0o777 == 0o700
    for named in ("dir", "dir/sub", "d*"):  # named as a source: present, though excluded itself
        assert expand_sources(src, named, ignored=ignore.excluded, what="COPY")
    from anybuild.errors import ContextError

    with pytest.raises(ContextError, match="not found"):
        expand_sources(src, "one.md", ignored=ignore.excluded, what="COPY")


@pytest.mark.parametrize(("current", "path", "expected"),
                         [("/", "/tmp/", "/tmp/"), ("/a", "b/", "/a/b"), ("/tmp/", "x", "/tmp/x"),
                          ("", "rel", "/rel"), ("/a", "/b/../c", "/b/../c")],
                         ids=["absolute-keeps-slash", "relative-cleaned", "after-slash", "from-root",
                              "absolute-verbatim"])
def test_workdir_value_as_buildkit_normalize_workdir(current: str, path: str, expected: str) -> None:
    # BuildKit's system.NormalizeWorkdir: an absolute path is kept as written (moby TestBuildBuildTimeArgExpansion
    # checks Config.WorkingDir == "/tmp/"), a relative one is joined and cleaned
    from anybuild.builder.instructions.metadata import workdir_value

    assert workdir_value(current, path) == expected


def test_cache_mount_directories_as_buildkit_keys_and_makes_them(tmp_path: Path) -> None:
    # BuildKit keys a cache by its id, and by the directory made for uid/gid/mode when any is given
    # (mounts.getRefCacheDir: id + ":" + base ref): a RUN without the options sees another cache.
    from anybuild.builder.instructions.run import RunContext, _cache_dir

    ctx = RunContext(sandbox=None, secrets={}, cache_dir=tmp_path, scratch=tmp_path, context=tmp_path,  # type: ignore[arg-type]
                     stage_roots=lambda _name: tmp_path, network=None, redactor=None,  # type: ignore[arg-type]
                     on_line=lambda _line: None)
    plain = _cache_dir("/c", None, None, None, ctx)
    owned = _cache_dir("/c", "1001", "1002", "0751", ctx)
    assert plain != owned and _cache_dir("/c", "1001", "1002", "0751", ctx) == owned
    assert _cache_dir("/c", "0", None, None, ctx) not in (plain, owned)  # uid=0 given is a base too
    info = owned.stat()
    assert (info.st_uid, info.st_gid, info.st_mode & 0o7777) == (1001, 1002, 0o751)
    assert plain.stat().st_mode & 0o7777 == 0o755
    assert _cache_dir("/d", None, None, "0777", ctx).stat().st_mode & 0o7777 == 0o755  # the daemon's umask 022
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".new-")) == []


@pytest.mark.parametrize(("text", "size"), [("128m", 134217728), ("1g", 1 << 30), ("512kb", 524288), ("1000", 1000),
                                            ("64MiB", 64 << 20)])
def test_tmpfs_size_read_as_go_units_ram_in_bytes(text: str, size: int) -> None:
    from anybuild.builder.instructions.run import ram_in_bytes

    assert ram_in_bytes(text, "Dockerfile:2") == size
    with pytest.raises(BuildFailed, match="invalid size"):
        ram_in_bytes("lots", "Dockerfile:2")


@pytest.mark.parametrize(("spec", "home"), [("", "/root"), ("app", "/home/app"), ("1000", "/home/app"),
                                            ("app:0", "/home/app"), ("ghost", "/"), ("4242", "/")])
def test_home_of_as_runc_sets_it(etc_root: RootDir, spec: str, home: str) -> None:
    from anybuild.builder.users import home_of

    assert home_of(spec, etc_root) == home
