"""The main job on the embedded default, offline: build examples/moltbook with the built-in builder.

No Docker Hub here, so this starts a Distribution registry on loopback that
serves base images made offline (busybox from Debian's busybox-static; node on
Debian from debootstrap, cached) under their Docker Hub names, as a docker.io
mirror. Then, on a copy of examples/moltbook in a git repository tagged
v1.2.3 whose images are pushed to that registry:

    anybuild doctor
    anybuild build --all --push --registry-mirror REGISTRY --insecure-registry REGISTRY

and `anybuild tags` to show where the names came from. Everything started is
stopped and removed at the end (or on Ctrl-C).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.harness.bases import BaseImages, cache_dir  # noqa: E402
from tests.harness.registry import running_registry  # noqa: E402


def run(argv: list[str], *, cwd: Path, env: dict[str, str], check: bool = True) -> int:
    print(f"\n$ {' '.join(argv)}", flush=True)
    done = subprocess.run(argv, cwd=cwd, env=env, check=False)
    if check and done.returncode != 0:
        raise SystemExit(done.returncode)
    return done.returncode


def git(repo: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "dana", "GIT_AUTHOR_EMAIL": "dana@example.com",
           "GIT_COMMITTER_NAME": "dana", "GIT_COMMITTER_EMAIL": "dana@example.com"}
    subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)


def main() -> int:
    anybuild = str(Path(sys.executable).with_name("anybuild"))
    work = Path(tempfile.mkdtemp(prefix="anybuild-demo-"))
    try:
        with running_registry(work / "registry") as registry:
            print(f"== offline base images, served by a registry on {registry.host} as a docker.io mirror")
            print("   making busybox:1.36 and node:20-bookworm-slim (debootstrap: minutes on the first run, "
                  "then cached) ...", flush=True)
            bases = BaseImages(mirror_host=registry.host, work=work / "bases", cache=cache_dir())
            print(f"   {bases.busybox}", flush=True)
            print(f"   {bases.node()}", flush=True)
            repo = Path(shutil.copytree(ROOT / "examples" / "moltbook", work / "moltbook"))
            config = repo / "anybuild.toml"
            config.write_text(config.read_text().replace("ghcr.io/acme/", f"{registry.host}/acme/"))
            git(repo, "init", "-q", "-b", "main")
            git(repo, "add", "-A")
            git(repo, "commit", "-q", "-m", "moltbook")
            git(repo, "tag", "v1.2.3")
            epoch = subprocess.run(["git", "log", "-1", "--format=%ct"], cwd=repo, check=True,
                                   capture_output=True, text=True).stdout.strip()
            # Reproducible: the same inputs give the same digest, whenever and wherever they are built.
            env = {**os.environ, "ANYBUILD_DATA_DIR": str(work / "data"), "SOURCE_DATE_EPOCH": epoch}
            mirror = ["--registry-mirror", registry.host, "--insecure-registry", registry.host]
            run([anybuild, "doctor"], cwd=repo, env=env, check=False)  # exit 3 is an answer, not a failure
            run([anybuild, "tags"], cwd=repo, env=env)
            run([anybuild, "build", "--all", "--push", "--progress", "plain", *mirror], cwd=repo, env=env)
            print("\n== again, after changing nothing: every step comes from the cache, same digests")
            run([anybuild, "build", "--all", "--push", "--progress", "plain", "-q", *mirror], cwd=repo, env=env)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
