"""Build several images at once: up to N in parallel, each independent of the others.

One image failing does not stop the others unless ``fail_fast`` is set, in which
case images not yet started are cancelled (running ones finish). The process's
cancellation (Ctrl-C, SIGTERM: :mod:`anybuild.cancellation`) starts no more
images; the running ones observe it themselves and stop. Every image ends as an
:class:`~anybuild.result.ImageOutcome`, in the order given, whatever order they
finished in.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from anybuild.cancellation import Cancellation
from anybuild.config import ImageSpec
from anybuild.errors import AnybuildError
from anybuild.result import ImageOutcome, RunResult

__all__ = ["BuildOne", "build_images", "default_jobs"]

BuildOne = Callable[[ImageSpec], ImageOutcome]
"""Builds one image and returns its outcome; may raise AnybuildError for a failure."""


def default_jobs(images: int, cpus: int | None = None) -> int:
    """As many parallel builds as images, capped by the cores (at least 2: builds wait on I/O)."""
    cores = cpus if cpus is not None else (os.cpu_count() or 1)
    return max(1, min(images, max(2, cores)))


def build_images(
    specs: Sequence[ImageSpec],
    build_one: BuildOne,
    *,
    jobs: int,
    fail_fast: bool = False,
    clock: Callable[[], float] = time.time,
    cancel: Cancellation | None = None,
) -> RunResult:
    """Run *build_one* for every spec, *jobs* at a time, and collect the outcomes."""
    if jobs < 1:
        raise ValueError("jobs must be at least 1")
    started = clock()
    outcomes: dict[str, ImageOutcome] = {}
    stop = threading.Event()

    def guarded(spec: ImageSpec) -> ImageOutcome:
        if cancel is not None and cancel.is_set():
            error = cancel.error(f"before {spec.name} was started (nothing of it was built)")
            now = clock()
            return ImageOutcome(name=spec.name, ok=False, started=now, finished=now, error=error.to_dict())
        if stop.is_set():
            return _cancelled(spec, clock())
        begun = clock()
        try:
            return build_one(spec)
        except AnybuildError as exc:
            return ImageOutcome(
                name=spec.name, ok=False, started=begun, finished=clock(), error=exc.to_dict(),
                diagnosis=getattr(exc, "diagnosis", None),
            )

    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="anybuild-image") as pool:
        pending: dict[Future[ImageOutcome], ImageSpec] = {
            pool.submit(guarded, spec): spec for spec in specs
        }
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    spec = pending.pop(future)
                    outcome = future.result()
                    outcomes[spec.name] = outcome
                    if fail_fast and not outcome.ok:
                        stop.set()
        except BaseException:
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return RunResult(
        images=tuple(outcomes[spec.name] for spec in specs),
        started=started,
        finished=clock(),
        jobs=jobs,
    )


def _cancelled(spec: ImageSpec, now: float) -> ImageOutcome:
    return ImageOutcome(
        name=spec.name,
        ok=False,
        started=now,
        finished=now,
        error={
            "kind": "cancelled",
            "message": f"{spec.name}: not built, because another image failed and --fail-fast is set",
            "hint": "fix the failing image, or build without --fail-fast",
        },
    )
