"""Multi-platform builds inside unprivileged pods (tests/harness/pod.py), where nobody can register a binfmt_misc
handler on the host: the pod has no CAP_SYS_ADMIN, and the host has no handler for arm64 (the test holds it so).

Where the pod allows a user namespace, the build's own binfmt_misc (Linux 6.7+) runs the arm64 RUN steps,
programs they exec included; where seccomp's RuntimeDefault refuses one, the explicit entry point does the
cross-compiling case. `anybuild doctor` in the pod says so first, from its attempts.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator

import pytest

from anybuild.oci.manifest import Index, Manifest
from anybuild.registry.client import RegistryClient
from anybuild.registry.reference import Reference
from tests.builder.multiplatform import CASES, host_binfmt
from tests.harness.bases import BaseImages
from tests.harness.pod import POD_VARIANTS, SOURCE, Pod, running_pod
from tests.harness.registry import Registry

pytestmark = [pytest.mark.slow, pytest.mark.root]

# (pod variant, the route doctor and the build must take, the case built)
EXPECTED = {"root": ("userns-binfmt", "exec"), "uid1000": ("userns-binfmt", "exec"),
            "uid1000-seccomp": ("entrypoint", "cross")}
VARIANTS = [pytest.param(v, id=v.name) for v in POD_VARIANTS if v.name in EXPECTED]


@pytest.fixture(params=VARIANTS)
def pod(request: pytest.FixtureRequest) -> Iterator[Pod]:
    with running_pod(request.param) as started:
        yield started


def test_pod_builds_both_platforms(pod: Pod, base_images: BaseImages, registry: Registry) -> None:
    route, case = EXPECTED[pod.variant.name]
    base_images.busybox_multi()
    inside = f"{SOURCE}/multi"
    context = pod.host_path(inside)
    context.mkdir(parents=True)
    (context / "Dockerfile").write_text(CASES[case])
    shutil.chown(context, pod.variant.uid, pod.variant.uid)
    shutil.chown(context / "Dockerfile", pod.variant.uid, pod.variant.uid)
    ref = f"{registry.host}/pods-multi/{pod.variant.name}:1"
    with host_binfmt(want=False):
        doctor = pod.anybuild("doctor", "--json", cwd=inside, timeout=300)
        assert doctor.returncode == 0, doctor.stderr[-3000:]
        platforms = json.loads(doctor.stdout)["facts"]["builder.platforms"]["value"]
        assert f"linux/arm64: {route}" in platforms, platforms
        done = pod.anybuild("build", "--backend", "builtin", "--platform", "linux/amd64,linux/arm64", "-t", ref,
                            "--push", "--insecure-registry", registry.host, "--registry-mirror", registry.host,
                            inside, cwd=inside, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    assert f"({route})" in done.stderr, done.stderr[-4000:]
    with RegistryClient(insecure=frozenset({registry.host})) as client:
        index = Index.from_json(client.get_manifest(Reference.parse(ref)).data)
        assert [str(p) for p in index.platforms()] == ["linux/amd64", "linux/arm64"]
        for entry in index.manifests:
            manifest = Manifest.from_json(client.get_manifest(Reference.parse(ref).at(entry.digest)).data)
            assert manifest.layers
    left = [m for m in pod.mounts() if "binfmt" in m]
    assert not left, left
