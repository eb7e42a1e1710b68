"""Background processes with pid files and logs under the state folder.

Everything the stack starts is recorded in `<state>/run/<name>.pid` and ended
through that pid, never looked up by name, so `down` stops exactly what `up`
started and nothing else on the machine.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import httpx

from streams.exceptions import ProcessFailed


class Procs:
    """The pid files and logs of one state folder."""

    def __init__(self, state_dir: Path) -> None:
        self.run_dir = state_dir / "run"
        self.log_dir = state_dir / "logs"

    def pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def pid(self, name: str) -> int | None:
        """The pid of `name` if it is alive, else None (a stale pid file is removed)."""
        path = self.pid_file(name)
        try:
            pid = int(path.read_text().strip())
            os.kill(pid, 0)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            path.unlink(missing_ok=True)
            return None
        except PermissionError:
            return pid
        if _is_zombie(pid):
            path.unlink(missing_ok=True)
            return None
        return pid

    def spawn(self, name: str, argv: list[str], env: Mapping[str, str]) -> int:
        """Start `argv` in its own session with output to the log; record its pid."""
        if (pid := self.pid(name)) is not None:
            return pid
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_file(name), "ab") as log:
            proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, **env}, start_new_session=True,
            )
        self.pid_file(name).write_text(str(proc.pid))
        return proc.pid

    def wait_ready(self, name: str, probe: Callable[[], bool], timeout_s: float) -> None:
        """Poll `probe` until it is true; fail early if the process dies."""
        deadline = time.monotonic() + timeout_s
        while not probe():
            if self.pid(name) is None:
                raise ProcessFailed(f"{name} exited during start-up:\n{self.tail(name)}")
            if time.monotonic() > deadline:
                raise ProcessFailed(f"{name} not ready after {timeout_s:.0f}s:\n{self.tail(name)}")
            time.sleep(0.3)

    def stop(self, name: str, timeout_s: float = 20.0) -> bool:
        """SIGTERM what we started, SIGKILL after `timeout_s`; True if something was running."""
        pid = self.pid(name)
        if pid is None:
            return False
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while self.pid(name) is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        if self.pid(name) is not None:
            _signal_group(pid, signal.SIGKILL)
        self.pid_file(name).unlink(missing_ok=True)
        return True

    def tail(self, name: str, lines: int = 25) -> str:
        try:
            text = self.log_file(name).read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return f"(no log at {self.log_file(name)})"
        return "\n".join(text[-lines:]) + f"\n(full log: {self.log_file(name)})"


def http_ok(url: str) -> Callable[[], bool]:
    """A probe that is true when `url` answers 200."""

    def probe() -> bool:
        try:
            return httpx.get(url, timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    return probe


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _signal_group(pid: int, sig: signal.Signals) -> None:
    # Each service runs in its own session (start_new_session), so its group id
    # is its pid: this reaches the children it spawned and nothing else.
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except (FileNotFoundError, IndexError):
        return False
