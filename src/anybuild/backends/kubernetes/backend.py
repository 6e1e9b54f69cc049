"""The kubernetes backend: one Kaniko Job per image (and per platform) in the user's cluster.

One :class:`KubernetesBackend` serves a whole run (every image of ``anybuild
build --all``): it connects and runs the preflight once, shares one registry
Secret between the run's Jobs (made when the first needs it, deleted when the
last ends), and deletes each Job with background propagation when its build
ends, whatever the outcome; the process's cancellation (Ctrl-C, SIGTERM, SIGHUP:
:mod:`anybuild.cancellation`) stops every build, which deletes what it made. The server-side TTL and deadline bound
what nothing deletes (a client killed with SIGKILL; ``anybuild cluster gc``).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anybuild.backends.base import BuildRequest, BuildResult, LogSink, Verdict
from anybuild.backends.kubernetes.settings import KubernetesSettings, UploadMode
from anybuild.cancellation import Cancellation
from anybuild.config import BackendName
from anybuild.environment.facts import FactKey, Facts
from anybuild.errors import AnybuildError, BackendError, BuildFailed, IntegrityError, Interrupted
from anybuild.redaction import Redactor

if TYPE_CHECKING:  # the rest loads when a build needs it: planning asks this module on every build
    from anybuild.backends.kubernetes.client import Cluster
    from anybuild.backends.kubernetes.model import PodState
    from anybuild.backends.kubernetes.preflight import Preflight
    from anybuild.backends.kubernetes.secret import RunSecret
    from anybuild.backends.kubernetes.spec import JobSpec
    from anybuild.backends.kubernetes.watch import Assessment
    from anybuild.registry.client import RegistryClient

__all__ = ["KubernetesBackend", "kubernetes_verdict"]

Connector = Callable[[KubernetesSettings], "Cluster"]
RegistryFactory = Callable[[BuildRequest], "RegistryClient"]


def kubernetes_verdict(facts: Facts) -> Verdict:
    """From the facts alone: are there cluster credentials (and, with --online, may they create Jobs)?"""
    credentials = facts.text(FactKey.KUBE_CREDENTIALS)
    evidence = tuple(e for e in (facts.evidence(FactKey.KUBE_CREDENTIALS), facts.evidence(FactKey.KUBE_NAMESPACE),
                                 facts.evidence(FactKey.KUBE_CAN_CREATE_JOBS)) if e)
    if credentials is None:
        return Verdict(ok=False, reason="no Kubernetes credentials (no kubeconfig, not in a pod)", evidence=evidence,
                       fix="set KUBECONFIG (or --kube-context), or run in a pod whose service account may create "
                           "Jobs")
    if facts.value(FactKey.KUBE_CAN_CREATE_JOBS) is False:
        return Verdict(ok=False, reason="these cluster credentials may not create Jobs", evidence=evidence,
                       fix="apply the Role of docs/backends/kubernetes.md in the namespace, or use --namespace")
    namespace = facts.text(FactKey.KUBE_NAMESPACE) or "default"
    return Verdict(ok=True, reason=f"Kaniko Jobs in the cluster ({credentials} credentials, namespace {namespace}); "
                                   "access is checked before anything is created", evidence=evidence)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Build:
    """What one image's Jobs share: the cluster, the request, the Secret and the packed context."""

    cluster: Cluster
    request: BuildRequest
    secret: str | None
    archive: Any  # upload.ContextArchive
    artifact: Any  # spec.ContextArtifact | None
    sink: LogSink


class KubernetesBackend:
    """Builds with Kaniko Jobs; see the module docstring. Safe to share between the run's image threads."""

    name: BackendName = BackendName.KUBERNETES

    def __init__(self, settings: KubernetesSettings | None = None, *, env: Mapping[str, str] | None = None,
                 connector: Connector | None = None, registry: RegistryFactory | None = None,
                 run_id: str | None = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, service_account: Path | None = None,
                 cancel: Cancellation | None = None) -> None:
        from anybuild.backends.kubernetes.spec import new_run_id
        self.settings = settings or KubernetesSettings()
        self.env = dict(os.environ if env is None else env)
        self.home = Path(self.env.get("HOME") or "/root")
        self.run_id = run_id or new_run_id()
        self.clock, self.sleep = clock, sleep
        self._connector = connector or self._connect
        self._registry = registry or self._registry_client
        self._service_account = service_account
        self._lock = threading.Lock()
        self._cluster: Cluster | None = None
        self._preflight: Preflight | None = None
        self._secret: RunSecret | None = None
        self.cancelled = cancel or Cancellation()  # every build's watch loop reads it
        self.redactor = Redactor()

    @classmethod
    def from_facts(cls, facts: Facts, *, runner: Any, env: Mapping[str, str]) -> KubernetesBackend:
        del facts, runner
        return cls(env=env)

    def available(self, facts: Facts) -> Verdict:
        return kubernetes_verdict(facts)

    # -- connections ------------------------------------------------------------------------------

    def _connect(self, settings: KubernetesSettings) -> Cluster:
        from anybuild.backends.kubernetes.client import connect
        extra = {"service_account": self._service_account} if self._service_account else {}
        return connect(kubeconfig=settings.kubeconfig, context=settings.context, namespace=settings.namespace,
                       env=self.env, home=self.home, **extra)

    def _registry_client(self, request: BuildRequest) -> RegistryClient:
        from anybuild.registry.client import RegistryClient
        from anybuild.registry.credentials import CredentialResolver
        from anybuild.registry.http import RegistryTimeouts
        resolver = CredentialResolver(env=self.env, home=self.home)
        return RegistryClient(credentials=resolver.resolve, insecure=frozenset(request.insecure_registries),
                              redactor=self.redactor, timeouts=RegistryTimeouts.from_env(self.env),
                              cancel=self.cancelled)

    def cluster(self) -> Cluster:
        with self._lock:
            if self._cluster is None:
                self._cluster = self._connector(self.settings)
            return self._cluster

    def rules(self) -> tuple[Any, ...]:
        from anybuild.backends.kubernetes.preflight import BUILD_RULES, SECRET_RULES
        return BUILD_RULES + (() if self.settings.registry_secret else SECRET_RULES)

    def check(self) -> Preflight:
        """Connect and ask the server (once per run): version, permissions."""
        from anybuild.backends.kubernetes.preflight import preflight
        cluster = self.cluster()
        with self._lock:
            if self._preflight is None:
                self._preflight = preflight(cluster, self.rules())
            return self._preflight

    @property
    def secret(self) -> RunSecret:
        """The run's registry Secret (see .secret), made on first use."""
        from anybuild.backends.kubernetes.secret import RunSecret

        with self._lock:
            if self._secret is None:
                self._secret = RunSecret(run_id=self.run_id, env=self.env, home=self.home, redactor=self.redactor,
                                         existing=self.settings.registry_secret)
            return self._secret

    def close(self) -> None:
        with self._lock:
            if self._cluster is not None:
                self._cluster.close()
                self._cluster = None

    def __enter__(self) -> KubernetesBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one build --------------------------------------------------------------------------------

    def build(self, request: BuildRequest, sink: LogSink) -> BuildResult:
        try:
            return self._build(request, sink)
        except AnybuildError as exc:  # what the API server echoes back must not carry a learned password
            exc.message, exc.hint = self.redactor(exc.message), self.redactor(exc.hint)
            exc.args = (exc.message,)
            raise

    def _build(self, request: BuildRequest, sink: LogSink) -> BuildResult:
        from anybuild.backends.kubernetes.preflight import EXEC_RULE, require
        from anybuild.backends.kubernetes.upload import pack_context, scratch_dir
        from anybuild.registry.reference import Reference
        started = time.time()
        from anybuild.backends.kubernetes.failures import refuse_unsupported

        refuse_unsupported(request)
        if self.cancelled.is_set():
            raise self.cancelled.error("before the build started")
        cluster = self.cluster()
        checked = self.check()
        require(checked, self.rules())
        upload = self.settings.upload
        if upload is UploadMode.EXEC:
            require(checked, (EXEC_RULE,))
        elif upload is UploadMode.AUTO:
            upload = UploadMode.EXEC if checked.exec_allowed else UploadMode.REGISTRY
        sink.line(f"anybuild: {checked.where}, namespace {checked.namespace}, server {checked.server_version}; "
                  f"run {self.run_id}; context upload: {upload}"
                  + ("" if checked.exec_allowed else " (pods/exec is not allowed here)"))
        platforms: list[str | None] = [p.strip() for p in (request.platform or "").split(",") if p.strip()] or [None]
        emit = _Redacting(sink, self.redactor)
        with scratch_dir() as scratch:
            archive = pack_context(request.context, request.dockerfile, Path(scratch))
            artifact = None
            hosts = {Reference.parse(tag).domain for tag in request.tags}
            if self.settings.cache_repo:
                hosts.add(Reference.parse(self.settings.cache_repo).domain)
            if upload is UploadMode.REGISTRY:
                artifact = self._push_artifact(request, archive, emit)
                hosts.add(artifact.registry)
            secret = self.secret.acquire(cluster, frozenset(hosts))
            build = _Build(cluster=cluster, request=request, secret=secret, archive=archive, artifact=artifact,
                           sink=emit)
            try:
                if len(platforms) == 1:
                    digest = self._run_job(build, platforms[0], request.tags, prefix="")
                else:
                    digest = self._multi_platform(build, [p for p in platforms if p])
                references = request.tags
            finally:
                self.secret.release(cluster, secret)
        return BuildResult(backend=self.name, digest=digest, references=tuple(references), sandbox="kaniko",
                           started=started, finished=time.time())

    def _push_artifact(self, request: BuildRequest, archive: Any, sink: LogSink) -> Any:
        from anybuild.backends.kubernetes.upload import push_context_artifact
        from anybuild.registry.reference import Reference
        repository = self.settings.context_repository or Reference.parse(request.tags[0]).repository
        target = Reference.parse(repository)
        with self._registry(request) as client:
            def put_blob(digest: str, size: int, opener: Any) -> None:
                from anybuild.oci import Descriptor, Digest

                descriptor = Descriptor(media_type="application/octet-stream", digest=Digest.parse(digest), size=size)
                if not client.blob_exists(target, descriptor.digest):
                    client.upload_blob(target, descriptor, opener)

            def put_manifest(data: bytes, media_type: str) -> None:
                from anybuild.oci import Digest
                from anybuild.registry.reference import Reference

                client.put_manifest(Reference(domain=target.domain, path=target.path, digest=Digest.of_bytes(data)),
                                    data, media_type)

            scheme = client.http.base_url(target.api_host).split(":", 1)[0]
            artifact = push_context_artifact(archive, f"{target.domain}/{target.path}", put_blob=put_blob,
                                             put_manifest=put_manifest, scheme=scheme)
        sink.line(f"anybuild: context pushed as an OCI artifact to {target.domain}/{target.path}@{artifact.digest} "
                  f"({archive.files} files, {archive.size} bytes)")
        return artifact

    def _multi_platform(self, build: _Build, platforms: list[str]) -> str:
        """One Job per platform on a node of that architecture (no emulation), then the index that joins them."""
        from anybuild.registry.reference import Reference
        first = Reference.parse(build.request.tags[0])
        results: dict[str, str] = {}
        errors: list[BaseException] = []

        def one(platform: str) -> None:
            from anybuild.registry.reference import Reference
            tag = f"{first.tag or 'latest'}-{platform.replace('/', '-')}"[:128]
            destination = str(Reference(domain=first.domain, path=first.path, tag=tag))
            try:
                results[platform] = self._run_job(build, platform, (destination,), prefix=f"[{platform}] ")
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=one, args=(p,), name=f"kaniko-{p}") for p in platforms]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        return self._push_index(build.request, results, build.sink)

    def _push_index(self, request: BuildRequest, digests: Mapping[str, str], sink: LogSink) -> str:
        from anybuild.oci import Digest
        from anybuild.oci.platform import Platform
        from anybuild.registry.reference import Reference

        first = Reference.parse(request.tags[0])
        manifests = []
        with self._registry(request) as client:
            for platform, digest in digests.items():
                fetched = client.get_manifest(Reference(domain=first.domain, path=first.path, digest=Digest.parse(
                    digest)))
                manifests.append({"mediaType": fetched.media_type, "digest": str(fetched.digest),
                                  "size": len(fetched.data), "platform": Platform.parse(platform).to_dict()})
            index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                                "manifests": manifests}, separators=(",", ":")).encode()
            pushed = Digest.of_bytes(index)
            for tag in request.tags:
                pushed = client.put_manifest(Reference.parse(tag), index, "application/vnd.oci.image.index.v1+json")
                sink.line(f"anybuild: pushed the index of {', '.join(digests)} to {tag}@{pushed}")
        return str(pushed)

    def _run_job(self, build: _Build, platform: str | None, destinations: tuple[str, ...], *, prefix: str) -> str:
        from anybuild.backends.kubernetes.client import api_path
        from anybuild.backends.kubernetes.secret import delete_object
        from anybuild.backends.kubernetes.spec import JobSpec, job_manifest
        from anybuild.registry.reference import Reference

        cluster, request, sink = build.cluster, build.request, build.sink
        context_root = request.context.resolve()
        spec = JobSpec(
            image=context_root.name if not request.tags else Reference.parse(request.tags[0]).path.rsplit("/", 1)[-1],
            run_id=self.run_id, namespace=cluster.namespace, destinations=destinations,
            build_args=dict(request.build_args), labels=dict(request.labels), target=request.target,
            platform=platform, insecure_registries=request.insecure_registries,
            registry_mirrors=dict(request.registry_mirrors), no_cache=request.no_cache, secret_name=build.secret,
            artifact=build.artifact,
        )
        manifest = job_manifest(spec, self.settings)
        cluster.request("POST", api_path("jobs", cluster.namespace), body=manifest)
        sink.line(f"{prefix}anybuild: created Job {spec.name}")
        try:
            return self._follow(build, spec, destinations, prefix=prefix)
        finally:
            delete_object(cluster, "jobs", spec.name)
            sink.line(f"{prefix}anybuild: deleted Job {spec.name}")

    def _follow(self, build: _Build, spec: JobSpec, destinations: tuple[str, ...], *, prefix: str) -> str:
        from anybuild.backends.failure import log_tail
        from anybuild.backends.kubernetes.client import ClusterError
        from anybuild.backends.kubernetes.failures import trouble_error, worth_events
        from anybuild.backends.kubernetes.upload import upload_over_exec
        from anybuild.backends.kubernetes.watch import (
            Assessment,
            PodWatch,
            Stage,
            Trouble,
            assess,
            job_refusal,
            read_events,
        )
        cluster, sink = build.cluster, build.sink
        stop = threading.Event()
        watcher = PodWatch(cluster, spec.name, stop=stop)
        lines: list[str] = []
        began = self.clock()

        def relay() -> None:
            while not stop.wait(0.1):
                if self.cancelled.is_set():
                    stop.set()

        threading.Thread(target=relay, daemon=True, name="kube-cancel").start()
        follower: threading.Thread | None = None
        try:
            found = watcher.find_pod(lambda: job_refusal(read_events(cluster, "Job", spec.name), cluster.namespace))
            if isinstance(found, Assessment):
                raise trouble_error(found, spec, self.settings)
            uploaded = spec.artifact is not None
            outcome: Assessment | None = None
            for pod in watcher.changes(found):
                pending = self.clock() - began
                events = read_events(cluster, "Pod", pod.name) if worth_events(pod) else []
                grace = float(self.settings.unschedulable_grace_seconds)
                outcome = assess(pod, events, pending_for=pending, grace=grace)
                if outcome.stage is Stage.RECEIVING and not uploaded:
                    upload_over_exec(cluster, pod.name, build.archive, sink, sleep=self.sleep)
                    uploaded = True
                if follower is None and outcome.stage in (Stage.RECEIVING, Stage.BUILDING) and uploaded:
                    follower = self._start_logs(build, pod, prefix=prefix, lines=lines, stop=stop)
                if outcome.stage in (Stage.SUCCEEDED, Stage.FAILED):
                    break
            if self.cancelled.is_set():
                raise Interrupted(f"interrupted by {self.cancelled.signal_name}: the build's Job and Secret were "
                                  "deleted", signum=self.cancelled.signum or signal.SIGINT,
                                  hint="run the build again")
            if outcome is None or outcome.stage not in (Stage.SUCCEEDED, Stage.FAILED):
                raise ClusterError(f"the pod of Job {spec.name} disappeared before it finished",
                                   hint="check whether something else deletes pods in the namespace")
            if follower is not None:
                follower.join(timeout=30)
            if outcome.stage is Stage.FAILED:
                if outcome.trouble is Trouble.EXECUTOR:
                    tail = log_tail(lines)
                    summary = next((line for line in reversed(tail) if "error" in line.lower()), outcome.reason)
                    raise BuildFailed(f"kubernetes build failed: {summary.strip()}", diagnosis={
                        "backend": "kubernetes", "exit_code": outcome.exit_code, "log_tail": tail},
                        hint="fix the Dockerfile step quoted above, then build again")
                raise trouble_error(outcome, spec, self.settings)
            return self._digest(build.request, outcome, destinations, sink, prefix)
        finally:
            stop.set()

    def _start_logs(self, build: _Build, pod: PodState, *, prefix: str, lines: list[str],
                    stop: threading.Event) -> threading.Thread:
        from anybuild.backends.kubernetes.logs import LogFollower
        from anybuild.backends.kubernetes.spec import EXECUTOR
        sink = build.sink

        def emit(text: str) -> None:
            lines.append(text)
            sink.line(prefix + text)

        follower = LogFollower(build.cluster, pod.name, EXECUTOR, emit, stop=stop, sleep=self.sleep)

        def run() -> None:
            try:
                follower.follow()
            except BackendError as exc:
                sink.line(f"{prefix}anybuild: the log stream of {pod.name} could not be followed: {exc.message}")

        thread = threading.Thread(target=run, daemon=True, name=f"logs-{pod.name}")
        thread.start()
        return thread

    def _digest(self, request: BuildRequest, outcome: Assessment, destinations: tuple[str, ...],
                sink: LogSink, prefix: str) -> str:
        from anybuild.oci import Digest
        from anybuild.registry.reference import Reference

        text = outcome.message.strip()
        try:
            digest = Digest.parse(text)
        except Exception as exc:
            raise IntegrityError(f"Kaniko exited 0 but its termination message is no digest: {text[:100]!r}",
                                 hint="check the executor image (it must support --digest-file)") from exc
        with self._registry(request) as client:
            served = client.head_manifest(Reference.parse(destinations[0]))
        if served != digest:
            raise IntegrityError(f"{destinations[0]} is {served or 'missing'} in the registry, but Kaniko reported "
                                 f"{digest}", hint="another push to the same tag raced this one; build again")
        sink.line(f"{prefix}anybuild: pushed {', '.join(destinations)}@{digest} (checked in the registry)")
        return str(digest)


class _Redacting:
    def __init__(self, sink: LogSink, redactor: Redactor) -> None:
        self.sink, self.redactor = sink, redactor

    def line(self, text: str) -> None:
        self.sink.line(self.redactor(text))
