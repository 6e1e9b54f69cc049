"""Benchmark: `anybuild doctor` with DOCKER_HOST on a socket that accepts and never answers.

The doctor must finish in under 2 s (the daemon probe gives up after ~1 s; the
other probes run meanwhile). Prints the wall time of each run and exits 1 if
any run took 2 s or more.

    .venv/bin/python bench/doctor_hung_daemon.py [RUNS]
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

LIMIT = 2.0


def hung_server(path: Path, stop: threading.Event) -> None:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(16)
    server.settimeout(0.2)
    held = []
    while not stop.is_set():
        try:
            held.append(server.accept()[0])  # accept, read nothing, answer nothing
        except TimeoutError:
            continue
    for conn in held:
        conn.close()
    server.close()


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    with tempfile.TemporaryDirectory(prefix="anybuild-hung-") as tmp:
        sock = Path(tmp) / "docker.sock"
        stop = threading.Event()
        thread = threading.Thread(target=hung_server, args=(sock, stop), daemon=True)
        thread.start()
        while not sock.exists():
            time.sleep(0.01)
        env = {**os.environ, "DOCKER_HOST": f"unix://{sock}"}
        worst = 0.0
        try:
            for run in range(1, runs + 1):
                started = time.monotonic()
                done = subprocess.run(
                    [sys.executable, "-m", "anybuild", "doctor", "--json"],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=30,
                    check=False,
                )
                elapsed = time.monotonic() - started
                worst = max(worst, elapsed)
                facts = json.loads(done.stdout)["facts"]
                # the docker probe past the budget leaves probe.docker saying so instead
                reachable = facts.get("docker.reachable") or facts.get("probe.docker") or {"value": None,
                                                                                            "evidence": "?"}
                print(
                    f"run {run}: doctor finished in {elapsed:.2f} s (exit {done.returncode}); "
                    f"docker.reachable={reachable['value']} ({reachable['evidence']})"
                )
        finally:
            stop.set()
            thread.join()
    verdict = "OK" if worst < LIMIT else "TOO SLOW"
    print(f"worst: {worst:.2f} s (limit {LIMIT:.1f} s): {verdict}")
    return 0 if worst < LIMIT else 1


if __name__ == "__main__":
    sys.exit(main())
