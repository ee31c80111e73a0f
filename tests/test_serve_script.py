"""bin/serve stops the web server and the worker, even a worker that hangs.

The script runs with a stand-in for Python whose "worker" ignores TERM, as
django-q's master does once its processes are gone, and starts a child of its
own, as the master does.
"""

import os
import signal
import subprocess
import tempfile
import textwrap
import time
from pathlib import Path

from django.conf import settings
from django.test import SimpleTestCase

FAKE_PYTHON = textwrap.dedent(
    """\
    #!/usr/bin/env bash
    case "$*" in
      *qcluster*)
        trap '' TERM
        sleep 600 &
        echo $! > "$FAKE_DIR/worker-child"
        echo $$ > "$FAKE_DIR/worker"
        wait ;;
      *gunicorn*)
        echo $$ > "$FAKE_DIR/web"
        exec sleep 600 ;;
    esac
    """
)


def alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    # A killed process nobody has reaped yet is gone all the same.
    return "\nState:\tZ" not in status


class ServeScriptTests(SimpleTestCase):
    def setUp(self):
        self.folder = Path(tempfile.mkdtemp(prefix="exeml-serve-"))
        fake = self.folder / "python"
        fake.write_text(FAKE_PYTHON)
        fake.chmod(0o755)
        env = {
            **os.environ,
            "PYTHON": str(fake),
            "FAKE_DIR": str(self.folder),
            "STOP_TIMEOUT": "1",
            "BIND": "127.0.0.1:1",
        }
        self.serve = subprocess.Popen(
            [str(settings.BASE_DIR / "bin" / "serve")],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.pids = self._started_pids()

    def tearDown(self):
        for pid in self.pids.values():
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        if self.serve.poll() is None:
            self.serve.kill()
        self.serve.wait()

    def _started_pids(self) -> dict[str, int]:
        names = ("web", "worker", "worker-child")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            files = [self.folder / name for name in names]
            if all(f.exists() and f.read_text().strip() for f in files):
                return {f.name: int(f.read_text()) for f in files}
            time.sleep(0.05)
        self.fail("bin/serve did not start both processes")

    def assert_everything_stopped(self):
        for name, pid in self.pids.items():
            self.assertFalse(alive(pid), f"{name} ({pid}) is still running")

    def test_it_kills_a_worker_that_ignores_term(self):
        self.serve.send_signal(signal.SIGTERM)

        self.assertEqual(self.serve.wait(timeout=60), 143)
        self.assert_everything_stopped()

    def test_it_stops_the_worker_when_the_web_server_dies(self):
        os.kill(self.pids["web"], signal.SIGKILL)

        self.assertEqual(self.serve.wait(timeout=60), 137)
        self.assert_everything_stopped()
