"""What the benchmarks share: loopback ports, waiting for a server, a process's CPU time, a fresh PostgreSQL
database per run, and the fake WeCom server started in its own process and stopped again.

Imported by the scripts beside it (``bench/`` is the running script's directory, so it is on ``sys.path``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx


def free_port() -> int:
    """An ephemeral loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until `url` answers 200 (fail early if `proc`, the server's process, exits)."""
    deadline = time.monotonic() + timeout
    # One client for every poll: each new one loads the CA bundle (a quarter of a CPU-second on a busy
    # machine), which the starting server needs more.
    with httpx.Client(timeout=1.0) as client:
        while time.monotonic() < deadline:
            try:
                if client.get(url).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if proc is not None and proc.poll() is not None:
                break
            time.sleep(0.05)
    raise SystemExit(f"{url} did not come up")


def cpu_of(pid: int) -> float:
    """CPU seconds a live process has used so far (Linux /proc; 0.0 where unavailable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fresh_postgres(base_url: str, suffix: str) -> str:
    """(Re)create the database ``<name>_<suffix>`` on the server of ``base_url``; returns its URL."""
    from sqlalchemy import create_engine, make_url, text

    base = make_url(base_url)
    name = f"{base.database}_{suffix}"
    admin = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


def start_fake_wecom(args: Sequence[str] = (), timeout: float = 120.0) -> tuple[subprocess.Popen[bytes], str]:
    """The fake WeCom server in its own process on a free port (`args`: its command-line options, e.g.
    --members/--contacts/--seed), once it answers; returns the process and its base URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "siyu.integrations.wecom.fake_server", "--port", str(port), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/_control/health", timeout, proc)
    except BaseException:
        stop(proc)
        raise
    return proc, url


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a child process (SIGTERM, then SIGKILL after 15 s) and reap it."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
