"""``anybuild build --backend github``: one workflow run builds the images, watched from here.

Plan, then apply: :func:`plan_dispatch` checks what is here against what the run
would see (pure but for the checks it is given) and makes the
:class:`DispatchPlan` — the workflow, the ref, the inputs. :func:`run_on_github`
dispatches it, finds the run (from the dispatch's answer, or by its request id
in the run's name where the server answers 204 or does not know
``return_run_details``), follows the run and its jobs with conditional requests,
and turns each image's job, log and result artifact into the same
:class:`~anybuild.result.ImageOutcome` as a local build. Ctrl-C cancels the run.
"""

from __future__ import annotations

import io
import json
import signal
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from anybuild.backends.base import LogSink
from anybuild.backends.github.client import GithubClient
from anybuild.backends.github.logs import clean_log, failing_section
from anybuild.backends.github.preflight import DispatchRef
from anybuild.backends.github.workflow import (
    ARTIFACT_PREFIX,
    INPUT_ARGS,
    INPUT_IMAGES,
    INPUT_REQUEST_ID,
    RESULT_FILE,
    RUN_NAME_PREFIX,
)
from anybuild.cancellation import signum_of
from anybuild.errors import GithubError, Interrupted
from anybuild.result import RESULT_SCHEMA_ID, ImageOutcome, RunResult, steps_from

__all__ = ["DispatchPlan", "RemoteSeams", "Watch", "run_on_github"]

_FIND_TIMEOUT = 180.0
_MAX_RESULT = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class DispatchPlan:
    """What will be dispatched: compared in tests, shown with -v."""

    repository: str
    web_url: str
    workflow: str
    ref: DispatchRef
    sha: str
    request_id: str
    images: tuple[str, ...]
    args: tuple[str, ...]
    expected: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # image -> references computed here
    reason: str = ""  # why the github backend builds
    skipped: tuple[Mapping[str, str], ...] = ()
    left_out: tuple[str, ...] = ()  # uncommitted changes the run will not see (--allow-dirty)
    fail_fast: bool = False

    @property
    def inputs(self) -> dict[str, str]:
        return {
            INPUT_REQUEST_ID: self.request_id,
            INPUT_IMAGES: json.dumps(list(self.images), separators=(",", ":")),
            INPUT_ARGS: json.dumps(list(self.args), separators=(",", ":")),
        }

    @property
    def run_name(self) -> str:
        return f"{RUN_NAME_PREFIX}{self.request_id}"

    def to_dict(self) -> dict[str, Any]:
        return {"repository": self.repository, "workflow": self.workflow, "ref": self.ref.name, "sha": self.sha,
                "inputs": self.inputs, "run_name": self.run_name}


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteSeams:
    client: GithubClient
    sink_for: Callable[[str], LogSink]
    notify: Callable[[str], None]  # run-level lines
    show_failure: Callable[[str, str, Sequence[str]], None]  # image, step, lines of its log
    diagnose: Callable[[Sequence[str]], Sequence[Any]]
    poll_interval: float = 5.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time


@dataclass(slots=True)
class Watch:
    """What was last said about each image, so that only changes are shown."""

    said: dict[str, str] = field(default_factory=dict)
    run_id: int | None = None
    html_url: str = ""


def _iso(stamp: str | None) -> float | None:
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _job_line(job: Mapping[str, Any]) -> str:
    status = job.get("status")
    if status == "completed":
        return f"job {job.get('conclusion') or 'completed'}"
    if status in ("queued", "waiting", "pending", "requested"):
        runner = "" if job.get("runner_name") is None else f" on {job['runner_name']}"
        return f"job {status}{runner} (waiting for a runner)" if not runner else f"job {status}{runner}"
    steps = [s for s in job.get("steps") or [] if isinstance(s, Mapping)]
    current = next((s for s in steps if s.get("status") == "in_progress"), None)
    if current is None:
        done = [s for s in steps if s.get("status") == "completed"]
        current = done[-1] if done else None
    if current is None:
        return "job in progress"
    return f"step {current.get('number')}/{len(steps)}: {current.get('name')}"


def run_on_github(plan: DispatchPlan, seams: RemoteSeams) -> RunResult:
    """Dispatch *plan*, follow its run to the end, and collect one outcome per image."""
    started = seams.clock()
    watch = Watch()
    for image in plan.images:
        sink = seams.sink_for(image)
        if plan.reason:
            sink.line(f"anybuild: building with github: {plan.reason}")
        sink.line(f"dispatching {plan.workflow} on {plan.ref.kind} {plan.ref.name} ({plan.sha[:12]}) in "
                  f"{plan.repository}")
    try:
        _dispatch(plan, seams, watch, started)
        run = _follow(plan, seams, watch)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM or SIGHUP turned into one by the command line
        signum = signum_of(exc)
        why = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        error = _interrupted(plan, seams, watch, started, why)
        error.signum, error.exit_code = signum, 128 + signum
        raise error from None
    outcomes = _collect(plan, seams, run, watch)
    return RunResult(images=tuple(outcomes), started=started, finished=seams.clock(), jobs=len(plan.images))


def _dispatch(plan: DispatchPlan, seams: RemoteSeams, watch: Watch, started: float) -> None:
    client = seams.client
    try:
        answer = client.dispatch(plan.workflow, plan.ref.name, plan.inputs, return_run_details=True)
    except GithubError as exc:
        if exc.status == 422 and "return_run_details" in exc.message:
            seams.notify("this GitHub does not know return_run_details (older GitHub Enterprise Server): "
                         "finding the run by its request id")
            answer = _translated_dispatch(plan, client, return_run_details=False)
        else:
            raise _dispatch_error(plan, exc) from exc
    if answer.run_id is not None:
        watch.run_id, watch.html_url = answer.run_id, answer.html_url or ""
    else:
        seams.notify(f"dispatched; GitHub did not return the run, looking for the run named {plan.run_name!r}")
        watch.run_id, watch.html_url = _find_run(plan, seams, started)
    seams.notify(f"workflow run {watch.run_id}: {watch.html_url}")


def _translated_dispatch(plan: DispatchPlan, client: GithubClient, *, return_run_details: bool) -> Any:
    try:
        return client.dispatch(plan.workflow, plan.ref.name, plan.inputs, return_run_details=return_run_details)
    except GithubError as exc:
        raise _dispatch_error(plan, exc) from exc


def _dispatch_error(plan: DispatchPlan, exc: GithubError) -> GithubError:
    init = (f"run `anybuild github init`, commit .github/workflows/{plan.workflow} and push it to the default "
            "branch (workflow_dispatch starts only workflows that are there)")
    text = exc.message.lower()
    if exc.status == 404 or (exc.status == 422 and "workflow_dispatch" in text):
        exc.message = (f"{plan.repository} has no dispatchable workflow {plan.workflow} on its default branch: "
                       f"{exc.message}")
        exc.hint = init
    elif exc.status == 422 and ("unexpected inputs" in text or "input" in text):
        exc.message = f"the workflow {plan.workflow} on {plan.ref.name} does not take anybuild's inputs: {exc.message}"
        exc.hint = "the workflow is older than this anybuild: " + init.replace(
            "`anybuild github init`", "`anybuild github init --force`")
    elif exc.status == 422 and "ref" in text:
        exc.hint = f"push {plan.ref.kind} {plan.ref.name} to GitHub first"
    return exc


def _find_run(plan: DispatchPlan, seams: RemoteSeams, started: float) -> tuple[int, str]:
    since = (datetime.fromtimestamp(started, tz=UTC) - timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    deadline = seams.clock() + _FIND_TIMEOUT
    polls = 0
    while True:
        polls += 1
        for run in seams.client.runs(plan.workflow, branch=plan.ref.name, created_after=since):
            if run.get("display_title") == plan.run_name:
                return int(run["id"]), str(run.get("html_url") or "")
        if seams.clock() >= deadline:
            raise GithubError(
                f"the dispatched run named {plan.run_name!r} did not appear in {plan.repository} within "
                f"{_FIND_TIMEOUT:.0f}s ({polls} looks)",
                hint=f"look at {plan.web_url}/actions/workflows/{plan.workflow}; if the run is there under another "
                "name, the workflow's run-name lost the request id: `anybuild lint --workflow`")
        seams.sleep(seams.poll_interval)


def _follow(plan: DispatchPlan, seams: RemoteSeams, watch: Watch) -> Mapping[str, Any]:
    assert watch.run_id is not None
    client = seams.client
    cancelled_for_failure = False
    while True:
        run = client.run(watch.run_id)
        if run.get("head_sha") and run["head_sha"] != plan.sha:
            seams.notify(f"warning: the run builds {str(run['head_sha'])[:12]}, not HEAD {plan.sha[:12]} "
                         f"({plan.ref.name} moved on GitHub meanwhile)")
        jobs = {str(j.get("name")): j for j in client.jobs(watch.run_id)}
        for image in plan.images:
            job = jobs.get(image)
            line = _job_line(job) if job else f"run {run.get('status') or 'queued'}"
            if watch.said.get(image) != line:
                watch.said[image] = line
                seams.sink_for(image).line(line)
        if run.get("status") == "completed":
            return run
        failed = [j for j in jobs.values() if j.get("conclusion") in ("failure", "timed_out")]
        if plan.fail_fast and failed and not cancelled_for_failure:
            cancelled_for_failure = True
            seams.notify(f"{failed[0].get('name')} failed and --fail-fast is set: cancelling run {watch.run_id}")
            client.cancel(watch.run_id)
        seams.sleep(seams.poll_interval)


def _interrupted(plan: DispatchPlan, seams: RemoteSeams, watch: Watch, started: float, why: str) -> Interrupted:
    client = seams.client
    if watch.run_id is None:
        try:  # the dispatch may have gone through: one look for the run
            found = [r for r in client.runs(plan.workflow, branch=plan.ref.name,
                                            created_after=datetime.fromtimestamp(started - 120, tz=UTC)
                                            .strftime("%Y-%m-%dT%H:%M:%SZ"))
                     if r.get("display_title") == plan.run_name]
        except (GithubError, KeyboardInterrupt):
            found = []
        if found:
            watch.run_id, watch.html_url = int(found[0]["id"]), str(found[0].get("html_url") or "")
    if watch.run_id is None:
        return Interrupted(f"interrupted by {why} before the run of request {plan.request_id} was found; "
                           "it may still start",
                           hint=f"cancel it on {plan.web_url}/actions if it does")
    try:
        cancelled = client.cancel(watch.run_id)
    except (GithubError, KeyboardInterrupt) as exc:
        detail = exc.message if isinstance(exc, GithubError) else "interrupted again"
        return Interrupted(f"interrupted by {why}; cancelling workflow run {watch.run_id} failed: {detail}",
                           hint=f"cancel it by hand: {watch.html_url}")
    what = "cancelled" if cancelled else "did not cancel (it had already finished)"
    return Interrupted(f"interrupted by {why}: {what} workflow run {watch.run_id} ({watch.html_url})",
                       hint="run the command again to build again")


def _collect(plan: DispatchPlan, seams: RemoteSeams, run: Mapping[str, Any], watch: Watch) -> list[ImageOutcome]:
    assert watch.run_id is not None
    client = seams.client
    jobs = {str(j.get("name")): j for j in client.jobs(watch.run_id)}
    artifacts = {str(a.get("name")): a for a in client.artifacts(watch.run_id) if not a.get("expired")}
    outcomes: list[ImageOutcome] = []
    for image in plan.images:
        job = jobs.get(image)
        record = _record(client, artifacts.get(f"{ARTIFACT_PREFIX}{image}"), image)
        outcomes.append(_outcome(plan, seams, watch, image=image, job=job, record=record))
    return outcomes


def _record(client: GithubClient, artifact: Mapping[str, Any] | None, image: str) -> Mapping[str, Any] | None:
    """The image's entry of the anybuild.result/v1 the runner wrote, from its artifact; None if none."""
    if artifact is None:
        return None
    data = client.artifact_zip(int(artifact["id"]))
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            info = archive.getinfo(RESULT_FILE)  # that one member, by name: no path from the zip is used
            if info.file_size > _MAX_RESULT:
                return None
            document = json.loads(archive.read(info))
    except (zipfile.BadZipFile, KeyError, ValueError):
        return None
    if not isinstance(document, Mapping) or document.get("schema") != RESULT_SCHEMA_ID:
        return None
    for entry in document.get("images") or []:
        if isinstance(entry, Mapping) and entry.get("name") == image:
            return entry
    return None


def _outcome(plan: DispatchPlan, seams: RemoteSeams, watch: Watch, *, image: str, job: Mapping[str, Any] | None,
             record: Mapping[str, Any] | None) -> ImageOutcome:
    run_text = f"workflow run {watch.run_id} ({watch.html_url})"
    warnings: list[str] = [f"left out of the build (uncommitted): {c}" for c in plan.left_out]
    base = ImageOutcome(name=image, ok=False, backend="github", skipped_backends=plan.skipped,
                        started=_iso(job.get("started_at")) if job else None,
                        finished=_iso(job.get("completed_at")) if job else None)
    if job is not None and job.get("conclusion") == "success" and record is not None and record.get("ok"):
        references = tuple(str(r) for r in record.get("references") or ())
        expected = plan.expected.get(image, ())
        pushed = {r.split("@", 1)[0] for r in references}
        if expected and pushed and pushed != set(expected):
            warnings.append(f"the run pushed {', '.join(sorted(pushed))}; here the tag rules give "
                            f"{', '.join(expected)}")
        runner_backend = record.get("backend") or "?"
        return replace(
            base, ok=True,
            backend_reason=f"{plan.reason}; {run_text}, on the runner: {runner_backend}"
            + (f" ({record['backend_reason']})" if record.get("backend_reason") else ""),
            digest=record.get("digest"), references=references, size=record.get("size"),
            layers=record.get("layers"), sandbox=record.get("sandbox"),
            steps=steps_from([s for s in record.get("steps") or [] if isinstance(s, Mapping)]),
            cache_hits=int(record.get("cache_hits") or 0), labels=dict(record.get("labels") or {}),
            warnings=(*warnings, *(str(w) for w in record.get("warnings") or ())),
        )
    return _failure(seams, base, job=job, record=record, run_text=run_text, warnings=warnings)


def _failure(seams: RemoteSeams, base: ImageOutcome, *, job: Mapping[str, Any] | None,
             record: Mapping[str, Any] | None, run_text: str, warnings: list[str]) -> ImageOutcome:
    image = base.name
    if job is None:
        error = {"kind": "backend", "message": f"{image}: {run_text} has no job for this image",
                 "hint": "the run failed before its jobs started: open it for the reason "
                         "(`anybuild lint --workflow` checks the workflow)", "exit_code": 1}
        return replace(base, error=error, warnings=tuple(warnings))
    conclusion = str(job.get("conclusion") or job.get("status"))
    if conclusion == "cancelled":
        error = {"kind": "cancelled", "message": f"{image}: the job was cancelled ({run_text})",
                 "hint": "run the build again", "exit_code": 1}
        return replace(base, error=error, warnings=tuple(warnings))
    steps = [s for s in job.get("steps") or [] if isinstance(s, Mapping)]
    failed_step = next((str(s.get("name")) for s in steps if s.get("conclusion") in ("failure", "timed_out")),
                       "the job" if conclusion != "timed_out" else "the job (timed out)")
    # the log is GitHub's text: known secrets out before it is shown, diagnosed or kept as evidence
    lines = [seams.client.redact(line) for line in failing_section(clean_log(seams.client.job_log(int(job["id"]))))]
    seams.show_failure(image, failed_step, lines)
    ranked = seams.diagnose(lines)
    diagnosis: Mapping[str, Any] | None = None
    if ranked:
        root = ranked[0]
        diagnosis = root.to_dict() if hasattr(root, "to_dict") else {"title": str(root)}
    remote_error = record.get("error") if record else None
    if diagnosis is None and record and isinstance(record.get("diagnosis"), Mapping):
        diagnosis = record["diagnosis"]
    message = f"{image}: step {failed_step!r} failed ({conclusion}) in {run_text}"
    if isinstance(remote_error, Mapping) and remote_error.get("message"):
        message += f": {remote_error['message']}"
    hint = str((diagnosis or {}).get("remedy") or (remote_error or {}).get("hint")
               or f"read the step's log above, or open {job.get('html_url') or run_text}")
    error = {"kind": "build", "message": message, "hint": hint, "exit_code": 1}
    return replace(base, error=error, diagnosis=diagnosis, warnings=tuple(warnings))
