"""THE STAND-IN FOR KANIKO. No container runtime, and so no Kaniko, can run on these machines: in the fake
cluster the executor container's run is simulated by anybuild's own built-in builder, building exactly the
context that was uploaded into the pod's emptyDir, with the arguments of the Job (``--context dir://``,
``--dockerfile``, every ``--destination``, ``--build-arg``, ``--label``, ``--target``, mirrors and insecure
registries), the registry credentials of the mounted Secret (``$DOCKER_CONFIG/config.json``), pushing to the
real test registry, and reporting the digest as Kaniko does (``--digest-file=/dev/termination-log``). A
failure ends like Kaniko's: ``error building image: ...`` and exit 1.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from anybuild.backends.base import BuildRequest
from anybuild.builder.build import BuildEnvironment, build_image
from anybuild.errors import AnybuildError
from tests.harness.kubeapi.simulation import ExecutorExit, ExecutorRun

__all__ = ["BuiltinStandInForKaniko", "parse_kaniko_args"]


def parse_kaniko_args(args: tuple[str, ...]) -> dict[str, list[str]]:
    parsed: dict[str, list[str]] = {}
    for arg in args:
        key, _, value = arg.removeprefix("--").partition("=")
        parsed.setdefault(key, []).append(value)
    return parsed


class BuiltinStandInForKaniko:
    """Runs the executor container of a fake pod with anybuild's built-in builder (see the module docstring)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.runs: list[dict[str, list[str]]] = []

    def _auth(self, run: ExecutorRun) -> str:
        config = Path(run.env.get("DOCKER_CONFIG", "/nonexistent")) / "config.json"
        if not config.is_file():
            return ""
        auths = json.loads(config.read_text()).get("auths") or {}
        table = {}
        for host, entry in auths.items():
            username, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            table[host] = {"username": username, "password": password}
        return json.dumps(table)

    def __call__(self, run: ExecutorRun) -> ExecutorExit:
        args = parse_kaniko_args(run.args)
        self.runs.append(args)
        context = run.host_path(args["context"][0].removeprefix("dir://"))
        dockerfile = run.host_path(args["dockerfile"][0])
        mirrors = {"docker.io": tuple(args.get("registry-mirror", ()))}
        for entry in args.get("registry-map", ()):
            registry, _, mirror = entry.partition("=")
            mirrors.setdefault(registry, ())
            mirrors[registry] += (mirror,)
        request = BuildRequest(
            context=context, dockerfile=dockerfile, tags=tuple(args.get("destination", ())), push=True,
            build_args=dict(a.split("=", 1) for a in args.get("build-arg", ())),
            labels=dict(a.split("=", 1) for a in args.get("label", ())),
            target=(args.get("target") or [None])[0], platform=(args.get("custom-platform") or [None])[0],
            insecure_registries=tuple(args.get("insecure-registry", ())),
            registry_mirrors={k: v for k, v in mirrors.items() if v},
        )
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(self.data_dir),
               "ANYBUILD_DATA_DIR": str(self.data_dir), "ANYBUILD_MIN_FREE_SPACE": "0",
               "ANYBUILD_REGISTRY_AUTH": self._auth(run)}
        run.log(f"INFO[0000] Retrieving image manifest for {request.dockerfile.name} (the built-in builder "
                "stands in for Kaniko in this fake cluster)")

        class _Sink:
            def line(self, text: str) -> None:
                run.log(f"INFO[0001] {text}")

        try:
            result = build_image(request, _Sink(), BuildEnvironment(env=env))
        except AnybuildError as exc:
            code = (getattr(exc, "diagnosis", None) or {}).get("exit_code")
            if isinstance(code, int) and " RUN " in f" {exc.message}":
                # Kaniko's own words for a failing RUN (it names no step: the lines before it do)
                run.log(f"INFO[0001] {exc.message}")
                run.log("error building image: error building stage: failed to execute command: waiting for "
                        f"process to exit: exit status {code}")
            else:
                run.log(f"error building image: {exc.message}")
            return ExecutorExit(exit_code=1, reason="Error")
        run.log(f"INFO[0002] Pushed {', '.join(request.tags)}")
        return ExecutorExit(exit_code=0, message=str(result.digest), reason="Completed")
