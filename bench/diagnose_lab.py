"""A throwaway lab of real components for bench/diagnose_corpus.py.

Everything lives under one private temporary directory: registries (plain, htpasswd,
TLS with a CA of its own, a 429 answering one), dockerd instances on private sockets and
data roots, mounts (overlay, tmpfs). ``Lab.close()`` stops every process it started (by
its own Popen handle) and unmounts everything it mounted, then removes the directory.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

DOCKER = "/usr/bin/docker"  # the 20.10 client; /usr/local/bin/docker is 28 without buildx
DOCKER28 = "/usr/local/bin/docker"


@dataclass
class Result:
    rc: int
    out: str


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


class _TooMany(http.server.BaseHTTPRequestHandler):
    """A registry front that answers 429 like Docker Hub, or proxies after N refusals."""

    budget: list[int]  # requests still to refuse (shared, per server)
    upstream: str

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def _refuse(self) -> None:
        body = (
            b'{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate '
            b"limit. You may increase the limit by authenticating and upgrading: "
            b'https://www.docker.com/increase-rate-limit"}]}'
        )
        self.send_response(429, "Too Many Requests")
        self.send_header("Content-Type", "application/json")
        self.send_header("Retry-After", "1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _proxy(self) -> None:
        import urllib.error
        import urllib.request

        req = urllib.request.Request(self.upstream + self.path, method=self.command)
        for key in ("Accept", "Range"):
            if self.headers.get(key):
                req.add_header(key, self.headers[key])
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                status, headers, data = resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as err:
            status, headers, data = err.code, err.headers, err.read()
        self.send_response(status)
        for key, value in headers.items():
            if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _handle(self) -> None:
        if self.path != "/v2/" and self.budget[0] != 0:
            self.budget[0] -= 1
            self._refuse()
        else:
            self._proxy()

    do_GET = do_HEAD = _handle


class Lab:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="anybuild-corpus-"))
        self._procs: list[subprocess.Popen[bytes]] = []
        self._mounts: list[Path] = []
        self._servers: list[http.server.ThreadingHTTPServer] = []

    # --- processes and commands -------------------------------------------------------------
    def run(
        self,
        *argv: str,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float = 180,
        input_text: str | None = None,
    ) -> Result:
        """Run a command; its stdout and stderr interleaved, as a log shows them."""
        full_env = {**os.environ, **(env or {})}
        try:
            done = subprocess.run(
                list(argv),
                env=full_env,
                cwd=cwd,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                input=input_text,
                text=True,
                errors="replace",
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else ""
            return Result(124, out + f"\n(timed out after {timeout}s)\n")
        return Result(done.returncode, done.stdout)

    def spawn(self, argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        handle = log.open("wb")
        proc = subprocess.Popen(
            argv,
            stdout=handle,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        handle.close()
        self._procs.append(proc)
        return proc

    def dir(self, *parts: str) -> Path:
        path = self.root.joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        return path

    # --- mounts -------------------------------------------------------------------------------
    def mount_overlay(self, name: str) -> Path:
        base = self.dir(name)
        for part in ("lower", "upper", "work", "merged"):
            (base / part).mkdir(exist_ok=True)
        opts = f"lowerdir={base}/lower,upperdir={base}/upper,workdir={base}/work"
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(base / "merged")], check=True)
        self._mounts.append(base / "merged")
        return base / "merged"

    def mount_tmpfs(self, name: str, size: str) -> Path:
        path = self.dir(name)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
        self._mounts.append(path)
        return path

    # --- registries ---------------------------------------------------------------------------
    def registry(self, name: str, *, htpasswd: Path | None = None, tls: tuple[Path, Path] | None = None) -> str:
        port = free_port()
        store = self.dir("registry", name)
        lines = [
            "version: 0.1",
            "log:",
            "  level: info",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {store}",
            "  delete:",
            "    enabled: true",
            "http:",
            f"  addr: 127.0.0.1:{port}",
        ]
        if tls:
            lines += ["  tls:", f"    certificate: {tls[0]}", f"    key: {tls[1]}"]
        if htpasswd:
            lines += ["auth:", "  htpasswd:", "    realm: corpus", f"    path: {htpasswd}"]
        config = store / "config.yml"
        config.write_text("\n".join(lines) + "\n")
        self.spawn(["docker-registry", "serve", str(config)], store / "registry.log")
        wait_port(port)
        return f"127.0.0.1:{port}"

    def too_many_requests(self, upstream: str, refusals: int = -1) -> str:
        """A front that answers 429 (``refusals`` times; -1: always), then proxies *upstream*."""
        handler = type("Handler", (_TooMany,), {"budget": [refusals], "upstream": f"http://{upstream}"})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._servers.append(server)
        return f"127.0.0.1:{server.server_address[1]}"

    def certificate(self, name: str, *, days: str = "30", not_before_days: int = 0) -> tuple[Path, Path]:
        """A self-signed certificate for 127.0.0.1 (valid from *not_before_days* from now)."""
        import datetime

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
        start = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=not_before_days)
        end = start + datetime.timedelta(days=int(days))
        import ipaddress

        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256())
        )
        directory = self.dir("certs", name)
        crt, pem = directory / "cert.pem", directory / "key.pem"
        crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        pem.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        return crt, pem

    # --- dockerd ------------------------------------------------------------------------------
    def dockerd(
        self, name: str, *, data_root: Path | None = None, args: tuple[str, ...] = ()
    ) -> tuple[str, Path, bool]:
        """Start dockerd; returns (DOCKER_HOST, its log, whether it came up)."""
        base = self.dir("dockerd", name)
        sock = base / "docker.sock"
        log = base / "dockerd.log"
        data = data_root or self.dir("dockerd", name, "data")
        argv = [
            "dockerd",
            "--data-root",
            str(data),
            "--exec-root",
            str(self.dir("dockerd", name, "exec")),
            "-H",
            f"unix://{sock}",
            "--pidfile",
            str(base / "docker.pid"),
            "--iptables=false",
            "--bridge=none",
            *args,
        ]
        proc = self.spawn(argv, log)
        host = f"unix://{sock}"
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return host, log, False
            if sock.exists() and self.run(DOCKER, "-H", host, "version", timeout=10).rc == 0:
                return host, log, True
            time.sleep(0.3)
        return host, log, False

    def close(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for proc in reversed(self._procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        time.sleep(0.5)
        for mount in reversed(self._mounts):
            if subprocess.run(["umount", "-R", str(mount)], check=False, capture_output=True).returncode:
                subprocess.run(["umount", "-R", "-l", str(mount)], check=False, capture_output=True)
        # dockerd leaves its own mounts under its data roots
        for line in reversed(Path("/proc/self/mountinfo").read_text().splitlines()):
            point = line.split()[4]
            if point.startswith(str(self.root)):
                subprocess.run(["umount", "-l", point], check=False, capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


def busybox_rootfs(lab: Lab) -> Path:
    """A busybox root filesystem tarball from Debian's busybox-static (no network)."""
    root = lab.dir("rootfs", "busybox")
    (root / "bin").mkdir(exist_ok=True)
    (root / "etc").mkdir(exist_ok=True)
    (root / "tmp").mkdir(exist_ok=True)
    shutil.copy2("/bin/busybox", root / "bin" / "busybox")
    applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        link = root / "bin" / applet
        if not link.exists():
            link.symlink_to("busybox")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n")
    (root / "etc" / "group").write_text("root:x:0:\nnobody:x:65534:\n")
    tarball = lab.root / "busybox.tar"
    subprocess.run(["tar", "-C", str(root), "-cf", str(tarball), "."], check=True)
    return tarball
