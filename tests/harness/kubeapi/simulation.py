"""What the fake cluster does with a Job: the Job controller, the scheduler, the kubelet.

A Job gets one pod (or, under a ``restricted`` PodSecurity level or an exhausted quota, a FailedCreate
event and no pod, as the real controller does). The pod is scheduled on a node whose labels match its
nodeSelector (else it stays Pending, Unschedulable), its image pulled (or ErrImagePull, then
ImagePullBackOff), then its init container's command really runs, with busybox (as in the Kaniko debug
image) and the volume mount paths mapped to directories of the test, and exec'd commands run the same
way. The executor container is run by a :class:`Executor` the test gives (the built-in builder standing
in for Kaniko, see kaniko.py), whose lines become the container's log and whose digest its termination
message. Deleting a pod stops what runs in it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tests.harness.kubeapi.store import Store, now_rfc3339

__all__ = ["Container", "Executor", "ExecutorRun", "Faults", "JobController", "PodRun", "busybox_path"]

_APPLETS = ("sh", "head", "wc", "sha256sum", "tar", "mkdir", "rm", "mv", "touch", "sleep", "echo", "cat", "sed",
            "tr", "wget", "ls", "true", "false", "test", "[", "printf")


@dataclass(slots=True)
class Faults:
    """What goes wrong in the fake cluster, set by a test."""

    denied: set[tuple[str, str, str]] = field(default_factory=set)  # (verb, resource, subresource)
    unpullable_images: set[str] = field(default_factory=set)
    node_arches: tuple[str, ...] = ("amd64",)
    pod_security: dict[str, str] = field(default_factory=dict)  # namespace -> enforce level
    quota_exceeded: bool = False
    oom: bool = False
    drop_exec_after: int | None = None  # bytes of stdin, once
    drop_logs_after: int | None = None  # lines, once
    exec_protocols: tuple[str, ...] = ("v5.channel.k8s.io", "v4.channel.k8s.io")
    gone_first_watch: bool = False  # the first pod watch from a resourceVersion is answered 410
    hold_executor: threading.Event | None = None  # the executor waits for it before it starts


def close_pipes(process: subprocess.Popen[bytes]) -> None:
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


def busybox_path(root: Path) -> str:
    """A PATH with busybox's applets (the Kaniko debug image's /busybox); the host's tools without it."""
    busybox = shutil.which("busybox")
    if busybox is None:
        return "/usr/local/bin:/usr/bin:/bin"
    root.mkdir(parents=True, exist_ok=True)
    for applet in _APPLETS:
        link = root / applet
        if not link.exists():
            link.symlink_to(busybox)
    return str(root)


@dataclass(slots=True)
class LogBuffer:
    """A container's log: (nanosecond stamp, line), appended while it runs."""

    lines: list[tuple[int, str]] = field(default_factory=list)
    done: bool = False
    cond: threading.Condition = field(default_factory=threading.Condition)

    def add(self, text: str) -> None:
        with self.cond:
            stamp = time.time_ns()
            if self.lines and stamp <= self.lines[-1][0]:
                stamp = self.lines[-1][0] + 1
            self.lines.append((stamp, text))
            self.cond.notify_all()

    def finish(self) -> None:
        with self.cond:
            self.done = True
            self.cond.notify_all()


@dataclass(slots=True)
class Container:
    spec: dict[str, Any]
    log: LogBuffer = field(default_factory=LogBuffer)
    started: bool = False

    @property
    def name(self) -> str:
        return str(self.spec["name"])


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutorRun:
    """The executor container, for the stand-in: its args with container paths mapped to the test's."""

    args: tuple[str, ...]
    env: Mapping[str, str]
    host_path: Callable[[str], Path]
    log: Callable[[str], None]
    cancelled: threading.Event


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutorExit:
    exit_code: int
    message: str = ""  # the termination message (Kaniko's --digest-file=/dev/termination-log)
    reason: str = ""  # "Completed", "Error", "OOMKilled"


class Executor(Protocol):
    def __call__(self, run: ExecutorRun) -> ExecutorExit: ...


class PodRun:
    """One pod's life, in a thread."""

    def __init__(self, controller: JobController, namespace: str, pod: dict[str, Any]) -> None:
        self.controller = controller
        self.store = controller.store
        self.namespace = namespace
        self.name = pod["metadata"]["name"]
        self.spec = pod["spec"]
        self.root = controller.root / "pods" / self.name
        self.cancelled = threading.Event()
        self.processes: list[subprocess.Popen[bytes]] = []
        self.init = [Container(c) for c in self.spec.get("initContainers") or ()]
        self.main = [Container(c) for c in self.spec.get("containers") or ()]
        self.running_init: Container | None = None
        self.thread = threading.Thread(target=self._run, name=f"pod-{self.name}", daemon=True)

    # -- paths -----------------------------------------------------------------------------------

    def volume_dir(self, name: str) -> Path:
        return self.root / "volumes" / name

    def _prepare_volumes(self) -> None:
        for volume in self.spec.get("volumes") or ():
            target = self.volume_dir(volume["name"])
            target.mkdir(parents=True, exist_ok=True)
            if "secret" in volume:
                secret = self.store.get("secrets", self.namespace, volume["secret"]["secretName"]) or {}
                import base64

                for item in volume["secret"].get("items") or ():
                    value = (secret.get("data") or {}).get(item["key"], "")
                    (target / item["path"]).write_bytes(base64.b64decode(value))

    def host_path(self, container: Container, path: str) -> Path:
        for mount in container.spec.get("volumeMounts") or ():
            base = mount["mountPath"].rstrip("/")
            if path == base or path.startswith(base + "/"):
                return self.volume_dir(mount["name"]) / path[len(base):].lstrip("/")
        raise ValueError(f"{path} is not on a volume of {container.name}")

    def environment(self, container: Container) -> dict[str, str]:
        env = {"PATH": self.controller.path, "HOME": str(self.root)}
        for entry in container.spec.get("env") or ():
            value = str(entry.get("value", ""))
            with contextlib.suppress(ValueError):
                value = str(self.host_path(container, value))
            env[entry["name"]] = value
        return env

    # -- status ----------------------------------------------------------------------------------

    def _status(self, change: Callable[[dict[str, Any]], None]) -> None:
        def apply(pod: dict[str, Any]) -> None:
            change(pod.setdefault("status", {}))

        self.store.update("pods", self.namespace, self.name, apply)

    def _container_status(self, container: Container, state: dict[str, Any], *, init: bool) -> None:
        key = "initContainerStatuses" if init else "containerStatuses"

        def change(status: dict[str, Any]) -> None:
            statuses = status.setdefault(key, [])
            entry = next((s for s in statuses if s["name"] == container.name), None)
            if entry is None:
                entry = {"name": container.name, "image": container.spec["image"], "ready": False,
                         "restartCount": 0, "started": False, "imageID": ""}
                statuses.append(entry)
            entry["state"] = state
            entry["started"] = "running" in state
            entry["ready"] = "running" in state and not init

        self._status(change)

    def _event(self, reason: str, message: str, type_: str = "Normal") -> None:
        pod = self.store.get("pods", self.namespace, self.name)
        if pod is not None:
            self.store.event(self.namespace, pod, "Pod", reason, message, type_)

    def _finish(self, phase: str, reason: str = "", message: str = "") -> None:
        def change(status: dict[str, Any]) -> None:
            status["phase"] = phase
            if reason:
                status["reason"] = reason
            if message:
                status["message"] = message

        self._status(change)
        self.controller.pod_finished(self.namespace, self.name, phase, reason)

    # -- life ------------------------------------------------------------------------------------

    def _sleep(self, seconds: float) -> bool:
        return not self.cancelled.wait(seconds)

    def _run(self) -> None:
        try:
            self._live()
        except Exception as exc:
            self._finish("Failed", "FakeError", f"{type(exc).__name__}: {exc}")

    def _live(self) -> None:
        faults = self.controller.faults
        selector = self.spec.get("nodeSelector") or {}
        arch = selector.get("kubernetes.io/arch")
        node = next((f"node-{a}" for a in faults.node_arches if arch in (None, a)), None)
        wanted_os = selector.get("kubernetes.io/os", "linux")
        others = {k: v for k, v in selector.items() if k not in ("kubernetes.io/arch", "kubernetes.io/os")}
        if node is None or wanted_os != "linux" or others:
            count = len(faults.node_arches)
            message = f"0/{count} nodes are available: {count} node(s) didn't match Pod's node affinity/selector."

            def unschedulable(status: dict[str, Any]) -> None:
                status["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                         "message": message, "lastTransitionTime": now_rfc3339()}]

            self._status(unschedulable)
            self._event("FailedScheduling", message, "Warning")
            return  # Pending for good, until deleted or past its deadline
        self.store.update("pods", self.namespace, self.name, lambda p: p["spec"].__setitem__("nodeName", node))

        def scheduled(status: dict[str, Any]) -> None:
            status["conditions"] = [{"type": "PodScheduled", "status": "True", "lastTransitionTime": now_rfc3339()}]
            status["startTime"] = now_rfc3339()

        self._status(scheduled)
        self._event("Scheduled", f"Successfully assigned {self.namespace}/{self.name} to {node}")
        self._prepare_volumes()
        for container in self.init:
            if not self._pull(container, init=True):
                return
            if not self._run_init(container):
                return
        for container in self.main:
            if not self._pull(container, init=False):
                return
        self._run_executor(self.main[0])

    def _pull(self, container: Container, *, init: bool) -> bool:
        image = container.spec["image"]
        if image not in self.controller.faults.unpullable_images:
            self._event("Pulled", f'Container image "{image}" already present on machine')
            return True
        message = (f'Failed to pull image "{image}": rpc error: code = NotFound desc = failed to pull and unpack '
                   f'image "{image}": failed to resolve reference "{image}": not found')
        self._container_status(container, {"waiting": {"reason": "ErrImagePull", "message": message}}, init=init)
        self._event("Failed", message, "Warning")
        self._event("Failed", "Error: ErrImagePull", "Warning")
        if not self._sleep(0.3):
            return False
        backoff = f'Back-off pulling image "{image}"'
        self._container_status(container, {"waiting": {"reason": "ImagePullBackOff", "message": backoff}},
                               init=init)
        self._event("BackOff", backoff, "Normal")
        self._event("Failed", "Error: ImagePullBackOff", "Warning")
        return False  # a real kubelet keeps retrying with back-off; nothing here will ever pull it

    def _spawn(self, container: Container, argv: Sequence[str], stdin: int | None) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(list(argv), env=self.environment(container), cwd=self.root,
                                   stdin=stdin if stdin is not None else subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        self.processes.append(process)
        return process

    def _run_init(self, container: Container) -> bool:
        self._event("Started", f"Started container {container.name}")
        self._container_status(container, {"running": {"startedAt": now_rfc3339()}}, init=True)
        self._status(lambda s: s.__setitem__("phase", "Pending"))
        container.started = True
        self.running_init = container
        command = [*(container.spec.get("command") or ()), *(container.spec.get("args") or ())]
        process = self._spawn(container, command, None)
        assert process.stdout is not None and process.stderr is not None

        def pump(stream: Any) -> None:
            with contextlib.suppress(ValueError, OSError):  # the pod was deleted: its pipes are gone
                for raw in iter(stream.readline, b""):
                    container.log.add(raw.decode(errors="replace").rstrip("\n"))

        readers = [threading.Thread(target=pump, args=(s,), daemon=True) for s in (process.stdout, process.stderr)]
        for reader in readers:
            reader.start()
        code = process.wait()
        for reader in readers:
            reader.join(timeout=5)
        close_pipes(process)
        container.log.finish()
        self.running_init = None
        if self.cancelled.is_set():
            return False
        reason = "Completed" if code == 0 else "Error"
        self._container_status(container, {"terminated": {"exitCode": code, "reason": reason,
                                                          "finishedAt": now_rfc3339()}}, init=True)
        if code != 0:
            self._finish("Failed")
            return False
        return True

    def _run_executor(self, container: Container) -> None:
        faults = self.controller.faults
        self._event("Started", f"Started container {container.name}")
        self._container_status(container, {"running": {"startedAt": now_rfc3339()}}, init=False)
        self._status(lambda s: s.__setitem__("phase", "Running"))
        container.started = True
        if faults.hold_executor is not None:
            while not faults.hold_executor.wait(0.05):
                if self.cancelled.is_set():
                    return
        run = ExecutorRun(args=tuple(container.spec.get("args") or ()), env=self.environment(container),
                          host_path=lambda p: self.host_path(container, p), log=container.log.add,
                          cancelled=self.cancelled)
        if faults.oom:
            container.log.add("INFO[0000] Unpacking rootfs as cmd RUN requires it.")
            result = ExecutorExit(exit_code=137, reason="OOMKilled")
        else:
            result = self.controller.executor(run)
        container.log.finish()
        self.controller.finished_logs.append((self.name, container.name, [t for _, t in container.log.lines]))
        if self.cancelled.is_set():
            return
        reason = result.reason or ("Completed" if result.exit_code == 0 else "Error")
        terminated = {"exitCode": result.exit_code, "reason": reason, "finishedAt": now_rfc3339()}
        if result.message:
            terminated["message"] = result.message
        self._container_status(container, {"terminated": terminated}, init=False)
        self._finish("Succeeded" if result.exit_code == 0 else "Failed")

    def exec_process(self, container_name: str, argv: Sequence[str]) -> subprocess.Popen[bytes]:
        container = self.running_init
        if container is None or container.name != container_name:
            raise LookupError(f"container {container_name} is not running")
        return self._spawn(container, argv, subprocess.PIPE)

    def stop(self) -> None:
        self.cancelled.set()
        for process in self.processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        for container in (*self.init, *self.main):
            container.log.finish()


class JobController:
    """Jobs → pods, deadlines, Job status, and deletion with propagation."""

    def __init__(self, store: Store, root: Path, faults: Faults, executor: Executor) -> None:
        self.store = store
        self.root = root
        self.faults = faults
        self.executor = executor
        self.path = busybox_path(root / "busybox")
        self.pods: dict[str, PodRun] = {}
        self.lock = threading.Lock()
        self.finished_logs: list[tuple[str, str, list[str]]] = []  # (pod, container, lines) of ended executors

    def job_created(self, namespace: str, job: dict[str, Any]) -> None:
        name = job["metadata"]["name"]
        level = self.faults.pod_security.get(namespace)
        if level == "restricted":
            message = (f'Error creating: pods "{name}-x7k2p" is forbidden: violates PodSecurity "restricted:latest": '
                       'allowPrivilegeEscalation != false (containers "context", "kaniko" must set '
                       'securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (containers '
                       '"context", "kaniko" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != '
                       'true (pod or containers "context", "kaniko" must set securityContext.runAsNonRoot=true)')
            self.store.event(namespace, job, "Job", "FailedCreate", message, "Warning")
            return
        if self.faults.quota_exceeded:
            message = (f'Error creating: pods "{name}-q8d3z" is forbidden: exceeded quota: builds, requested: '
                       'limits.memory=4Gi, used: limits.memory=8Gi, limited: limits.memory=10Gi')
            self.store.event(namespace, job, "Job", "FailedCreate", message, "Warning")
            return
        template = job["spec"]["template"]
        uid = job["metadata"]["uid"]
        labels = {**(template.get("metadata") or {}).get("labels", {}), "batch.kubernetes.io/job-name": name,
                  "job-name": name, "batch.kubernetes.io/controller-uid": uid, "controller-uid": uid}
        import copy as _copy
        import uuid

        pod = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{name}-{uuid.uuid4().hex[:5]}", "namespace": namespace, "labels": labels,
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": uid,
                                              "controller": True, "blockOwnerDeletion": True}]},
            "spec": _copy.deepcopy(template["spec"]),
            "status": {"phase": "Pending"},
        }
        created = self.store.create("pods", namespace, pod)
        self.store.event(namespace, job, "Job", "SuccessfulCreate", f"Created pod: {created['metadata']['name']}")
        self.store.update("jobs", namespace, name, lambda j: j.setdefault("status", {}).update(
            {"active": 1, "startTime": now_rfc3339()}))
        run = PodRun(self, namespace, created)
        with self.lock:
            self.pods[run.name] = run
        deadline = job["spec"].get("activeDeadlineSeconds")
        if deadline:
            threading.Thread(target=self._deadline, args=(namespace, name, run, float(deadline)), daemon=True).start()
        run.thread.start()

    def _deadline(self, namespace: str, job: str, run: PodRun, seconds: float) -> None:
        if run.cancelled.wait(seconds):
            return
        pod = self.store.get("pods", namespace, run.name)
        if pod is None or pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            return
        run.stop()

        def dead(p: dict[str, Any]) -> None:
            p["status"].update({"phase": "Failed", "reason": "DeadlineExceeded",
                                "message": "Pod was active on the node longer than the specified deadline"})

        self.store.update("pods", namespace, run.name, dead)
        self._job_failed(namespace, job, "DeadlineExceeded", "Job was active longer than specified deadline")

    def _job_failed(self, namespace: str, job: str, reason: str, message: str) -> None:
        def failed(j: dict[str, Any]) -> None:
            status = j.setdefault("status", {})
            status.update({"active": 0, "failed": 1})
            status["conditions"] = [{"type": "Failed", "status": "True", "reason": reason, "message": message,
                                     "lastTransitionTime": now_rfc3339()}]

        if self.store.update("jobs", namespace, job, failed):
            found = self.store.get("jobs", namespace, job)
            if found:
                self.store.event(namespace, found, "Job", reason, message, "Warning")

    def pod_finished(self, namespace: str, pod: str, phase: str, reason: str) -> None:
        found = self.store.get("pods", namespace, pod)
        if found is None:
            return
        job = found["metadata"]["labels"].get("job-name", "")
        if phase == "Succeeded":
            def complete(j: dict[str, Any]) -> None:
                status = j.setdefault("status", {})
                status.update({"active": 0, "succeeded": 1, "completionTime": now_rfc3339()})
                status["conditions"] = [{"type": "Complete", "status": "True", "lastTransitionTime": now_rfc3339()}]

            self.store.update("jobs", namespace, job, complete)
        else:
            self._job_failed(namespace, job, reason or "BackoffLimitExceeded", "Job has reached the specified "
                             "backoff limit")

    def pod(self, name: str) -> PodRun | None:
        with self.lock:
            return self.pods.get(name)

    def delete_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            run = self.pods.pop(name, None)
        if run is not None:
            run.stop()
        return self.store.delete("pods", namespace, name)

    def delete_job(self, namespace: str, name: str, propagation: str) -> dict[str, Any] | None:
        deleted = self.store.delete("jobs", namespace, name)
        if deleted is not None and propagation in ("Background", "Foreground"):
            for pod in self.store.list("pods", namespace, labels=f"job-name={name}"):
                self.delete_pod(namespace, pod["metadata"]["name"])
        return deleted

    def stop(self) -> None:
        with self.lock:
            runs = list(self.pods.values())
        for run in runs:
            run.stop()
