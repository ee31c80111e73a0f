"""Harness for the browser suite: the real app, a real Chromium, screenshots.

The app runs as `make run` runs it (migrate, collectstatic, then bin/serve: gunicorn
and the django-q2 worker) on a free loopback port, with a fresh database and media
folder in a temporary directory. The tests talk to it over HTTP only, never
through Django's test client or database.
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Page

REPO_DIR = Path(__file__).resolve().parents[2]
E2E_DIR = Path(__file__).resolve().parent
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
SERVER_START_TIMEOUT = 90
LOG_TAIL_LINES = 150


def pytest_collection_modifyitems(config, items):
    # Everything under tests/e2e is a browser test, so `-m "not e2e"` skips it
    # without each module having to remember the marker.
    for item in items:
        if E2E_DIR in item.path.parents:
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed or E2E_DIR not in item.path.parents:
        return

    # The flow is one story told in steps: once a step fails, the later ones
    # only repeat the failure, so they are skipped (see pytest_runtest_setup).
    item.session.stash[_failed_step_key] = item.name

    flow = item.funcargs.get("flow")
    if flow is not None:
        flow.screenshot(f"FAILED-{item.name}")
        if flow.problems:
            report.sections.append(("browser errors", "\n".join(flow.problems)))

    server = item.session.stash.get(_server_key, None)
    if server is not None:
        report.sections.append(("web server and worker log", server.log_tail()))


def pytest_runtest_setup(item):
    failed = item.session.stash.get(_failed_step_key, None)
    if failed and E2E_DIR in item.path.parents:
        pytest.skip(f"an earlier step failed: {failed}")


def pytest_terminal_summary(terminalreporter):
    folder = terminalreporter.config.stash.get(_artifacts_key, None)
    if folder is not None:
        terminalreporter.write_line(f"Browser suite screenshots: {folder}", bold=True)


_failed_step_key = pytest.StashKey[str]()
_server_key = pytest.StashKey["StudioServer"]()
_artifacts_key = pytest.StashKey[Path]()


@dataclass
class StudioServer:
    url: str
    var_dir: Path
    log_path: Path
    process: subprocess.Popen | None = None

    def log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError as exc:
            return f"(no log: {exc})"
        return "\n".join(lines[-LOG_TAIL_LINES:])

    def stop(self) -> None:
        # bin/serve stops gunicorn and the worker when it gets SIGTERM. Signalling
        # the whole group instead reaches the worker's own child processes
        # directly, and the worker then waits for them for ever. bin/serve runs
        # in its own process group, so whatever is left afterwards is killed.
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _app_environment(var_dir: Path, bind: str) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("MEDIA_ROOT", "SECRET_KEY", "ALLOWED_HOSTS", "Q_SYNC"):
        env.pop(name, None)
    env.update(
        VAR_DIR=str(var_dir),
        DATABASE_URL="",
        DEBUG="false",
        BIND=bind,
        PYTHON=sys.executable,
        PYTHONUNBUFFERED="1",
    )
    return env


def _manage(env: dict[str, str], log, *args: str) -> None:
    log.write(f"$ manage.py {' '.join(args)}\n")
    log.flush()
    subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        check=True,
        timeout=120,
    )


def _wait_until_healthy(server: StudioServer) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(
                f"bin/serve exited with {server.process.returncode} before "
                f"answering:\n{server.log_tail()}"
            )
        try:
            with urllib.request.urlopen(f"{server.url}/healthz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.3)
    pytest.fail(
        f"/healthz did not answer in {SERVER_START_TIMEOUT} s:\n{server.log_tail()}"
    )


@pytest.fixture(scope="session")
def artifacts_dir(request) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = REPO_DIR / "test-artifacts" / "e2e" / stamp
    folder.mkdir(parents=True, exist_ok=True)
    request.config.stash[_artifacts_key] = folder
    # Said at once, not only in the summary, so a long run can be watched.
    plugins = request.config.pluginmanager
    reporter = plugins.get_plugin("terminalreporter")
    capture = plugins.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\nBrowser suite screenshots: {folder}")
    return folder


@pytest.fixture(scope="session")
def studio_server(request, artifacts_dir):
    """The studio, started as `make run` starts it, on a fresh database."""
    var_dir = Path(tempfile.mkdtemp(prefix="exeml-e2e-"))
    port = _free_port()
    server = StudioServer(
        url=f"http://127.0.0.1:{port}",
        var_dir=var_dir,
        log_path=artifacts_dir / "server.log",
    )
    env = _app_environment(var_dir, f"127.0.0.1:{port}")

    with server.log_path.open("w") as log:
        try:
            _manage(env, log, "migrate", "--noinput")
            _manage(env, log, "collectstatic", "--noinput", "--verbosity", "0")
        except subprocess.CalledProcessError:
            pytest.fail(f"setting up the app failed:\n{server.log_tail()}")

        server.process = subprocess.Popen(
            [str(REPO_DIR / "bin" / "serve")],
            cwd=REPO_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    request.session.stash[_server_key] = server
    try:
        _wait_until_healthy(server)
        yield server
    finally:
        server.stop()
        shutil.rmtree(var_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    executable = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if not os.access(executable, os.X_OK):
        pytest.skip(
            f"BROWSER SUITE SKIPPED: no Chromium at {executable}; install Debian's "
            "chromium package (bin/e2e-test does it when it can)"
        )

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@dataclass
class Flow:
    """One person's browser session through the studio, with what it saw."""

    page: "Page"
    artifacts_dir: Path
    problems: list[str] = field(default_factory=list)
    visited: list[str] = field(default_factory=list)
    shots: int = 0
    # Filled in by the steps as they go.
    state: dict = field(default_factory=dict)

    def screenshot(self, name: str, *, full_page: bool = True) -> Path:
        self.shots += 1
        path = self.artifacts_dir / f"{self.shots:02d}-{name}.png"
        try:
            self.page.screenshot(path=str(path), full_page=full_page)
        except Exception as exc:  # a screenshot must never hide the real failure
            print(f"screenshot {path.name} failed: {exc}")
        return path

    def assert_no_browser_errors(self, where: str) -> None:
        assert not self.problems, f"browser errors by {where}:\n" + "\n".join(
            self.problems
        )


@pytest.fixture(scope="module")
def flow(browser, studio_server, artifacts_dir):
    context = browser.new_context(
        base_url=studio_server.url, viewport={"width": 1280, "height": 900}
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    flow = Flow(page=page, artifacts_dir=artifacts_dir)

    # Nothing is ignored: a favicon, a stylesheet or an htmx swap that fails shows
    # up as a console error, and that is a bug a user would see.
    def on_console(message):
        if message.type == "error":
            source = message.location.get("url")
            where = f" (from {source})" if source and source != page.url else ""
            flow.problems.append(f"console error on {page.url}: {message.text}{where}")

    def on_page_error(error):
        flow.problems.append(f"page error on {page.url}: {error}")

    def on_response(response):
        if response.status >= 500:
            flow.problems.append(
                f"server error {response.status} for {response.request.method} "
                f"{response.url}"
            )

    def on_navigation(frame):
        if frame == page.main_frame and frame.url not in flow.visited:
            flow.visited.append(frame.url)

    page.on("console", on_console)
    page.on("pageerror", on_page_error)
    page.on("response", on_response)
    page.on("framenavigated", on_navigation)
    yield flow
    context.close()
