"""Plumbing for the benchmarks: an isolated studio, measured child processes,
process memory read from /proc, and a small loopback HTTP client.

Nothing here imports torch: the benchmark driver stays a light process, and
every figure that needs the model is measured in a child process of its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from http.client import HTTPConnection
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO / "bench"
PYTHON = sys.executable


def studio_env(var_dir: Path, shared_dir: Path) -> dict[str, str]:
    """Environment for a studio living entirely in `var_dir`, on SQLite."""
    env = dict(os.environ)
    for name in ("MEDIA_ROOT", "DATABASE_URL", "SECRET_KEY", "DEBUG", "Q_SYNC"):
        env.pop(name, None)
    env.update(
        {
            "VAR_DIR": str(var_dir),
            "DATABASE_URL": "",
            "DJANGO_SETTINGS_MODULE": "bench_settings",
            "PYTHONPATH": os.pathsep.join([str(BENCH_DIR), str(REPO)]),
            "EXEML_SHARED_DIR": str(shared_dir),
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


# bin/serve exports this before it starts the worker and the web server (glibc
# gives every thread that predicts its own memory pool otherwise); it keeps a
# value the caller already set, as bin/serve does.
SERVE_DEFAULTS = {"MALLOC_ARENA_MAX": "2"}


def serve_env(env: dict[str, str]) -> dict[str, str]:
    """`env` plus what bin/serve sets for the web server and the worker."""
    served = dict(env)
    for name, value in SERVE_DEFAULTS.items():
        if not served.get(name):
            served[name] = value
    return served


@dataclass
class Measured:
    """A finished child process: its output, wall time and peak memory."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    peak_rss_mb: float

    def check(self) -> Measured:
        if self.returncode != 0:
            raise RuntimeError(
                f"{' '.join(self.args)} exited with {self.returncode}:\n"
                f"{self.stderr[-3000:]}\n{self.stdout[-2000:]}"
            )
        return self

    def last_json(self) -> dict:
        """The last line of stdout that is a JSON object."""
        for line in reversed(self.stdout.splitlines()):
            line = line.strip()
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    return json.loads(line)
        # A command may print its JSON object over several lines.
        start = self.stdout.find("{")
        if start >= 0:
            with contextlib.suppress(ValueError):
                return json.loads(self.stdout[start:])
        raise RuntimeError(f"No JSON object in the output of {' '.join(self.args)}")


def run_measured(
    args: list[str], env: dict[str, str], timeout: float = 3600
) -> Measured:
    """Run a child process; its peak RSS comes from wait4()'s resource usage.

    ru_maxrss of the reaped child is the high-water mark of that process alone
    (not of the driver, not of other children), in KiB on Linux.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(args, stdout=out, stderr=err, env=env, cwd=REPO)
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Measured(
            args=[str(a) for a in args],
            returncode=proc.returncode,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
            seconds=seconds,
            peak_rss_mb=usage.ru_maxrss / 1024,
        )


def manage(env: dict[str, str], *args: str, timeout: float = 3600) -> Measured:
    return run_measured([PYTHON, str(REPO / "manage.py"), *args], env, timeout)


def rss_mb(pid: int) -> float:
    """Current resident set size of a process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"No VmRSS for process {pid}")


def peak_rss_of(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"No VmHWM for process {pid}")


def torch_loaded(pid: int) -> bool:
    """Whether the process has torch's shared library mapped."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return "libtorch" in maps


def environment_of(pid: int) -> dict[str, str]:
    """The environment a process was started with."""
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


def reset_peak_rss(pid: int) -> bool:
    """Start the process's VmHWM again from its current RSS (Linux 4.0+).

    Writing 5 to clear_refs resets only the peak; True when it was reset.
    """
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def child_pids(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            children.append(int(entry.name))
    return sorted(children)


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants, parents before children."""
    tree = [pid]
    for child in child_pids(pid):
        tree += process_tree(child)
    return tree


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class BackgroundWorker:
    """The studio's background worker, `manage.py qcluster`, as bin/serve runs it.

    django-q forks a sentinel, which forks a pusher, a monitor and the worker
    processes that run the tasks; the command starts in a process group of its
    own so that stopping it leaves nothing behind. Memory figures cover the
    whole tree: the task runs in one of the forked workers.
    """

    def __init__(self, env: dict[str, str], log_path: Path):
        self.env = serve_env(env)
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.log = None

    def start(self, timeout: float = 90) -> BackgroundWorker:
        self.log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [PYTHON, str(REPO / "manage.py"), "qcluster"],
            env=self.env,
            cwd=REPO,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        # Ready once the sentinel has forked its pusher, monitor and workers;
        # a run queued earlier would count the cluster's start in its seconds.
        from django.conf import settings

        wanted = 1 + 1 + 2 + settings.Q_CLUSTER.get("workers", 1)
        deadline = time.monotonic() + timeout
        while len(self.pids()) < wanted:
            self.check_alive()
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"qcluster did not start; see {self.log_path}")
            time.sleep(0.1)
        time.sleep(0.5)
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"qcluster exited with {self.proc.returncode}; see {self.log_path}"
            )

    def pids(self) -> list[int]:
        return process_tree(self.proc.pid)

    def reset_peak_rss(self) -> bool:
        """Reset every process's peak; False if any could not be reset."""
        results = [reset_peak_rss(pid) for pid in self.pids()]
        return all(results)

    def peak_rss(self) -> dict[int, float]:
        """VmHWM of every process of the tree, in MB."""
        peaks = {}
        for pid in self.pids():
            with contextlib.suppress(OSError, RuntimeError):
                peaks[pid] = peak_rss_of(pid)
        return peaks

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM to qcluster (it stops its workers), then to its whole group."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=timeout)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except OSError:  # no process left in the group
                break
            time.sleep(1)
        if self.proc.poll() is None:
            self.proc.wait()
        if self.log:
            self.log.close()
            self.log = None

    def __enter__(self) -> BackgroundWorker:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class WebServer:
    """The studio under gunicorn, started with bin/serve's options.

    One worker process with 8 threads (bin/serve's defaults), bound to a free
    loopback port, with bin/serve's environment (`serve_env`). `worker_pid` is
    the process that serves requests.
    """

    def __init__(self, env: dict[str, str], log_path: Path):
        self.env = serve_env(env)
        self.log_path = log_path
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.worker_pid: int | None = None

    def __enter__(self) -> WebServer:
        self.log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "gunicorn",
                "exeml_site.wsgi:application",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                "1",
                "--threads",
                "8",
                "--timeout",
                "300",
                "--no-control-socket",
                "--access-logfile",
                "-",
            ],
            env=self.env,
            cwd=REPO,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited; see {self.log_path}")
            with contextlib.suppress(OSError):
                status, _, _ = self.request("GET", "/healthz")
                if status == 200:
                    break
            time.sleep(0.2)
        else:
            self.__exit__(None, None, None)
            raise RuntimeError(f"gunicorn did not answer; see {self.log_path}")

        workers = child_pids(self.proc.pid)
        if len(workers) != 1:
            raise RuntimeError(f"Expected one gunicorn worker, found {workers}")
        self.worker_pid = workers[0]
        return self

    def __exit__(self, *exc) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def connection(self) -> HTTPConnection:
        return HTTPConnection("127.0.0.1", self.port, timeout=120)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        conn: HTTPConnection | None = None,
    ) -> tuple[int, bytes, float]:
        """One request; returns (status, body, seconds)."""
        own = conn is None
        conn = conn or self.connection()
        try:
            started = time.perf_counter()
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            data = response.read()
            return response.status, data, time.perf_counter() - started
        finally:
            if own:
                conn.close()


def multipart(field: str, filename: str, data: bytes, content_type: str):
    """A multipart/form-data body holding one file, and its Content-Type."""
    boundary = uuid.uuid4().hex
    body = b"".join(
        [
            f"--{boundary}\r\n".encode(),
            (
                f'Content-Disposition: form-data; name="{field}"; '
                f'filename="{filename}"\r\n'
            ).encode(),
            f"Content-Type: {content_type}\r\n\r\n".encode(),
            data,
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )
    return body, f"multipart/form-data; boundary={boundary}"


def percentile(values: list[float], fraction: float) -> float:
    """Linear interpolation between the closest ranks."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    lower = int(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def machine() -> dict:
    """The machine the figures came from."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram_gb = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "ram_gb": ram_gb,
        "python": sys.version.split()[0],
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
