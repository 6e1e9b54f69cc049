"""What stops a build before Kaniko could say anything, as the error a user reads (pure).

Each :class:`~.watch.Trouble` becomes an error with the remedy: environmental
ones (the cluster cannot run the build: image pull, admission, quota,
scheduling) as a :class:`~.client.ClusterError` the planner may fall back from;
the build's own limits (OOMKilled, the deadline) as a ``BuildFailed``.
"""

from __future__ import annotations

from anybuild.backends.base import BuildRequest
from anybuild.backends.kubernetes.client import ClusterError
from anybuild.backends.kubernetes.model import PodState
from anybuild.backends.kubernetes.settings import KubernetesSettings
from anybuild.backends.kubernetes.spec import JobSpec
from anybuild.backends.kubernetes.watch import Assessment, Trouble
from anybuild.errors import BackendError, BuildFailed

__all__ = ["refuse_unsupported", "trouble_error", "worth_events"]


def worth_events(pod: PodState) -> bool:
    """Whether the pod's events may explain a wait (a container stuck waiting, or not scheduled)."""
    waiting = [c for c in (*pod.init, *pod.containers) if c.state == "waiting" and c.reason not in (
        "PodInitializing", "ContainerCreating")]
    return bool(waiting) or pod.scheduled is False


def refuse_unsupported(request: BuildRequest) -> None:
    def refuse(what: str, hint: str) -> None:
        raise BackendError(f"the kubernetes backend {what}", backend="kubernetes", environmental=True, hint=hint)

    if not request.push or not request.tags:
        refuse("builds only to push (the image is made in the cluster): add --push and a tag",
               "add --push, or build here with --backend builtin")
    if request.load or request.output:
        refuse("cannot --load or --output (the image is made in the cluster)", "push it, then pull it")
    if request.secrets:
        refuse("cannot pass build secrets to Kaniko", "build here with --backend builtin for RUN --mount=type=secret")


_HINTS: dict[str, str] = {  # by watch.Trouble
    "image-pull": "check the executor image (image in [backend.kubernetes]) and the node's access to its "
        "registry (imagePullSecrets)",
    "container-config": "check the Secret and ConfigMaps the pod refers to (registry_secret)",
    "unschedulable": "check node_selector and tolerations in [backend.kubernetes], and that a node of the "
        "wanted architecture has room",
    "admission": "build in a namespace whose PodSecurity level is baseline or privileged "
        "(pod-security.kubernetes.io/enforce=baseline), e.g. --namespace builds",
    "quota": "free some of the namespace's quota, lower resources in [backend.kubernetes], or use another "
        "namespace",
    "oom": "raise resources.limits.memory in [backend.kubernetes] (Kaniko holds the filesystem in memory "
        "while it snapshots)",
    "deadline": "raise deadline_seconds in [backend.kubernetes], or make the build faster (--cache)",
    "init": "check the context upload (the init container's log) and context_size_limit",
    "evicted": "the node ran short of resources: raise context_size_limit or use another node pool",
}


def trouble_error(found: Assessment, spec: JobSpec, settings: KubernetesSettings) -> BackendError:
    del settings
    message = f"Job {spec.name}: {found.reason}"
    hint = _HINTS.get(str(found.trouble), "") if found.trouble else ""
    if found.trouble in (Trouble.OOM, Trouble.DEADLINE):
        return BuildFailed(message, hint=hint, diagnosis={"backend": "kubernetes", "cause": str(found.trouble),
                                                          "exit_code": found.exit_code, "log_tail": []})  # type: ignore[return-value]
    return ClusterError(message, hint=hint, reason=str(found.trouble or ""))
