"""A git checkout of examples/moltbook whose GitHub is the in-repo fake (tests/backends/github/fakegithub.py)."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from anybuild.config import load_config
from anybuild.gitstate import read_git_state
from anybuild.process import SubprocessRunner
from anybuild.result import ImageOutcome, RunResult, StepRecord
from anybuild.tags.image import compute_image_metadata
from tests.backends.github.fakegithub import FakeGithub, JobPlan

ROOT = Path(__file__).resolve().parents[3]
MOLTBOOK = ROOT / "examples" / "moltbook"
GIT_ENV = {"GIT_AUTHOR_NAME": "Dana", "GIT_AUTHOR_EMAIL": "dana@example.com", "GIT_COMMITTER_NAME": "Dana",
           "GIT_COMMITTER_EMAIL": "dana@example.com", "GIT_CONFIG_NOSYSTEM": "1"}


@pytest.fixture
def token() -> str:
    # no prefix the redaction patterns know (ghp_, github_pat_): only the value itself can hide it
    return "tok" + secrets.token_hex(20)


@pytest.fixture
def fake(token: str) -> Iterator[FakeGithub]:
    github = FakeGithub(token=token)
    with github.serving():
        yield github
    assert github.schema_errors == [], "the fake answered what GitHub's schema does not allow"


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, env={**os.environ, **GIT_ENV, "HOME": str(repo.parent)},
                          capture_output=True, text=True, check=True)
    return done.stdout.strip()


@dataclass
class Checkout:
    path: Path
    fake: FakeGithub
    token: str
    home: Path

    @property
    def sha(self) -> str:
        return git(self.path, "rev-parse", "HEAD")

    def env(self, **extra: str) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items()
                if not k.startswith(("GITHUB_", "GH_", "ANYBUILD_E2E")) and k not in ("CI",)}
        return {**keep, **GIT_ENV, "HOME": str(self.home), "GH_ENTERPRISE_TOKEN": self.token,
                "ANYBUILD_DATA_DIR": str(self.home / "data"), "COLUMNS": "200", **extra}

    def anybuild(self, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "anybuild", *args], cwd=self.path, env=self.env(**env),
                              capture_output=True, text=True, timeout=timeout, check=False)

    def popen(self, *args: str, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "anybuild", *args], cwd=self.path, env=self.env(**env),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def expected_references(self, image: str) -> tuple[str, ...]:
        """The references anybuild computes here for *image*: what the runner's anybuild pushes too."""
        config = load_config(self.path / "anybuild.toml")
        state = read_git_state(self.path, SubprocessRunner(), {})
        metadata = compute_image_metadata(config, config.image(image), state, datetime.now(tz=UTC))
        return metadata.references


def result_document(image: str, references: tuple[str, ...], *, ok: bool = True) -> dict[str, object]:
    """The anybuild.result/v1 a runner's `anybuild build IMAGE --metadata-file` writes (made by anybuild's code)."""
    digest = "sha256:" + (image.encode().hex() * 64)[:64]
    outcome = ImageOutcome(
        name=image, ok=ok, backend="docker", backend_reason="a Docker daemon answers (BuildKit)",
        digest=digest if ok else None, references=tuple(f"{r}@{digest}" for r in references) if ok else (),
        size=48213977, layers=7, sandbox="buildkit", started=1796637600.0, finished=1796637612.5,
        steps=(StepRecord(name="COPY package*.json ./", seconds=0.1, cached=True),
               StepRecord(name="RUN npm ci --omit=dev", seconds=5.1)), cache_hits=1,
        labels={"org.opencontainers.image.revision": "x"},
    )
    return RunResult(images=(outcome,), started=1796637600.0, finished=1796637613.0).to_dict()


@pytest.fixture
def checkout(tmp_path: Path, fake: FakeGithub, token: str) -> Checkout:
    repo = tmp_path / "moltbook"
    shutil.copytree(MOLTBOOK, repo)
    config = repo / "anybuild.toml"
    config.write_text(config.read_text() + f'\n[backend.github]\nrepository = "acme/moltbook"\n'
                      f'api-url = "{fake.api_url}"\npoll-interval = 0.02\n')
    git(tmp_path, "init", "-q", "-b", "main", str(repo))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "moltbook")
    git(repo, "remote", "add", "origin", "https://github.com/acme/moltbook.git")
    home = tmp_path / "home"
    home.mkdir()
    checkout = Checkout(path=repo, fake=fake, token=token, home=home)
    fake.branches["main"] = checkout.sha
    for image in ("api", "frontend"):
        fake.plans[image] = JobPlan(image=image, result=result_document(image, checkout.expected_references(image)))
    return checkout
