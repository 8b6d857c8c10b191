"""Child processes of the benchmark: the loopback origin, and one process per client run.

The origin is ``python -m benchmarks.origin`` (``kithara_hls.testing serve``
with TCP_NODELAY; ``stock=True`` runs the latter as it is): it prints its base
URL, then serves until its stdin closes. A client is ``python -m benchmarks.clients``
(see that module for the ready/go/result protocol). Every wait here has a
deadline, and a child that overstays it is killed by its own pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

try:
    import psutil
except ImportError:  # CPU time then comes from the child's own report
    psutil = None

#: The repository root: children run from here, so `benchmarks` and `kithara_hls` import.
REPO_ROOT = Path(__file__).resolve().parent.parent
#: Longest wait for a child to start (interpreter, imports) and for the origin's URL.
START_TIMEOUT_S = 60.0
#: Longest wait for a child to exit once its work is done.
EXIT_TIMEOUT_S = 15.0
_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


class ChildError(RuntimeError):
    """A child process failed, or overstayed its deadline; the message ends with its stderr."""


def child_env() -> dict[str, str]:
    """The environment of every child: no proxies (traffic stays on 127.0.0.1), the repo importable."""
    env = {k: v for k, v in os.environ.items() if k not in _PROXY_VARS}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


class _LineReader:
    """Reads a child's stdout lines on a daemon thread, so the parent can wait with a timeout."""

    def __init__(self, stream: IO[str]) -> None:
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(stream,), name="bench-stdout", daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def get(self, timeout: float) -> str | None:
        """The next line, None at EOF; raises `queue.Empty` after `timeout` seconds."""
        return self._lines.get(timeout=timeout)

    def wait_for(self, predicate: Any, timeout: float) -> str | None:
        """The first line satisfying `predicate` within `timeout`, None at EOF or timeout."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self.get(remaining)
            except queue.Empty:
                return None
            if line is None or predicate(line):
                return line
        return None


def _stop(proc: subprocess.Popen[str]) -> None:
    """Close the child's stdin and wait for it; terminate, then kill it (by pid) if it stays."""
    if proc.stdin is not None and not proc.stdin.closed:
        with contextlib.suppress(OSError):
            proc.stdin.close()
    for escalate in (None, proc.terminate, proc.kill):
        if escalate is not None:
            escalate()
        try:
            proc.wait(EXIT_TIMEOUT_S)
            return
        except subprocess.TimeoutExpired:
            continue


def _tail(path: Path, limit: int = 3000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return text[-limit:]


class OriginProcess:
    """A loopback origin serving `root` in its own process; `url` once started."""

    def __init__(
        self, root: Path, *, latency: float = 0.0, bandwidth: float | None = None, stock: bool = False
    ) -> None:
        self.root = root
        self.stock = stock
        self.latency = latency
        self.bandwidth = bandwidth
        self.url = ""
        self._proc: subprocess.Popen[str] | None = None
        self._log = Path(tempfile.mkstemp(prefix="bench-origin-", suffix=".log")[1])

    def start(self) -> str:
        """Start serving and return the base URL (``http://127.0.0.1:PORT/``)."""
        command = ["kithara_hls.testing", "serve"] if self.stock else ["benchmarks.origin"]
        argv = [sys.executable, "-m", *command, str(self.root), "--latency", str(self.latency)]
        if self.bandwidth:
            argv += ["--bandwidth", str(self.bandwidth)]
        with self._log.open("w") as err:
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
                env=child_env(), cwd=REPO_ROOT,
            )  # fmt: skip
        line = _LineReader(self._proc.stdout).wait_for(lambda s: s.startswith("http"), START_TIMEOUT_S)  # type: ignore[arg-type]
        if line is None or not line.startswith("http://127.0.0.1:"):
            self.stop()
            raise ChildError(f"origin did not start\n{_tail(self._log)}")
        self.url = line
        return line

    def stop(self) -> None:
        """Stop the origin. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None:
            _stop(proc)
        self._log.unlink(missing_ok=True)


@dataclass(frozen=True)
class ClientRun:
    """One client run: the child's own report, and the parent's wall and CPU of the window."""

    report: dict[str, Any]
    wall_s: float
    cpu_s: float


def _cpu(proc: Any) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system + t.children_user + t.children_system)


def run_client(argv: list[str], timeout: float) -> ClientRun:
    """Run ``python -m benchmarks.clients *argv`` and measure its go→result window."""
    fd, log_name = tempfile.mkstemp(prefix="bench-client-", suffix=".log")
    log = Path(log_name)
    try:
        with os.fdopen(fd, "w") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.clients", *argv],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
                env=child_env(), cwd=REPO_ROOT,
            )  # fmt: skip
        try:
            return _measure(proc, timeout, log)
        finally:
            _stop(proc)
    finally:
        log.unlink(missing_ok=True)


def _measure(proc: subprocess.Popen[str], timeout: float, log: Path) -> ClientRun:
    assert proc.stdin is not None and proc.stdout is not None
    lines = _LineReader(proc.stdout)
    if lines.wait_for(lambda s: s == "ready", START_TIMEOUT_S) is None:
        raise ChildError(f"client did not start\n{_tail(log)}")
    handle = psutil.Process(proc.pid) if psutil is not None else None
    cpu0 = _cpu(handle) if handle is not None else 0.0
    t0 = time.perf_counter()
    proc.stdin.write("go\n")
    proc.stdin.flush()
    line = lines.wait_for(lambda s: s.startswith("{"), timeout)
    wall = time.perf_counter() - t0
    if line is None:
        status = "timed out" if proc.poll() is None else f"exited {proc.returncode}"
        if proc.poll() is None:
            proc.terminate()  # our own child, by pid; _stop escalates to kill if it lingers
        raise ChildError(f"client {status} after {wall:.1f} s\n{_tail(log)}")
    report = json.loads(line)
    cpu = _cpu(handle) - cpu0 if handle is not None else float(report["cpu_s"])
    return ClientRun(report, wall, cpu)
