"""The anybuild test harness: real components on 127.0.0.1, in private temp dirs.

Modules, one per component (fixtures.py wires them into pytest; contract in
tests/harness/README.md):

- procs: free ports, start in a new session with a log, readiness waits, group kill, unmount.
- registry: `docker-registry serve` plain, with htpasswd Basic auth, or with TLS (tlsca).
- oci: deterministic OCI image layouts (tarfile + hashlib + json).
- bases: busybox / debian / node base images, pushed with skopeo; debootstrap cache
  in ~/.cache/anybuild-tests (ANYBUILD_TEST_CACHE) under an fcntl lock.
- dockerd: private dockerd + its own containerd; buildah: private buildah storage.
- overlay: the nested-overlay mount and the dockerd overlay2 failure on it.

Missing components skip with the reason and the Debian package to install
(scripts/install-test-deps.sh); under CI=true they fail instead.
"""
