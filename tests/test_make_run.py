"""`make run` from the README: migrates, seeds, prints the logins, serves the
admin with a worker, and Ctrl-C stops both. Runs the real command on a
temporary SQLite database and a free port."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent

# serial: the machine to itself, in make test's one-process pass (see the Makefile).
pytestmark = pytest.mark.serial


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _children_cmdlines(pid: int) -> list[str]:
    out = subprocess.run(["ps", "-o", "pid=,pgid=,args=", "-e"], capture_output=True, text=True)
    return [line for line in out.stdout.splitlines() if "manage.py" in line]


@pytest.mark.skipif(not (ROOT / ".venv" / "bin" / "python").exists(), reason="needs make's .venv")
def test_make_run_serves_the_admin_and_the_printed_login_works(tmp_path):
    port = _free_port()
    env_file = ROOT / ".env"
    had_env_file = env_file.exists()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", PORT=str(port))
    proc = subprocess.Popen(
        ["make", "run", f"PORT={port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output: list[str] = []
    try:
        deadline = time.monotonic() + 180
        logins: dict[str, str] = {}
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            output.append(line)
            match = re.match(r"\s+(\w+)\s+/\s+(\S+)\s+\(", line)
            if match:
                logins[match.group(1)] = match.group(2)
            if f"http://127.0.0.1:{port}/admin/" in line:
                break
        assert "admin" in logins, "".join(output)

        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=5) as client:
            for _ in range(120):
                try:
                    page = client.get("/admin/login/")
                    if page.status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.5)
            assert page.status_code == 200
            token = client.cookies["csrftoken"]
            response = client.post(
                "/admin/login/?next=/admin/",
                data={
                    "username": "admin",
                    "password": logins["admin"],
                    "csrfmiddlewaretoken": token,
                    "next": "/admin/",
                },
                headers={"Referer": f"{base}/admin/login/"},
            )
            assert response.status_code == 302 and response.headers["location"] == "/admin/"
            index = client.get("/admin/")
            assert index.status_code == 200 and "Campaigns" in index.text

        running = _children_cmdlines(proc.pid)
        assert any("qcluster" in line for line in running), running
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal sends
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        finally:
            if not had_env_file and env_file.exists():
                env_file.unlink()
    time.sleep(1)
    leftovers = [line for line in _children_cmdlines(proc.pid) if f"127.0.0.1:{port}" in line]
    assert leftovers == []
