"""Benchmarks of the studio, each beside a bare baseline measured in the same run.

    .venv/bin/python bench/run.py            # full run, writes bench/results.json
    .venv/bin/python bench/run.py --smoke    # tiny sizes, to check nothing rotted

The studio lives in a throwaway VAR_DIR (SQLite, media, collected static files)
for the whole run, so the repository's var/ is never touched. See
bench/README.md for what each benchmark measures and its target.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from subprocess import PIPE

from harness import (
    BENCH_DIR,
    PYTHON,
    REPO,
    BackgroundWorker,
    WebServer,
    environment_of,
    machine,
    manage,
    multipart,
    percentile,
    rss_mb,
    run_measured,
    serve_env,
    studio_env,
    torch_loaded,
)
from images import labeled_photos, typical_photo, write_photo_set
from PIL import Image as PILImage

BENCHMARKS = ("import", "train", "retrain", "gallery", "predict", "memory")
# balance last: its embeddings stay in the cache for the retrain benchmark, and
# the bare baseline runs right after it, in the same conditions.
PREFERENCES = ("performance_first", "accuracy_first", "balance")
USERNAME = "bench"
PASSWORD = "bench-password-not-secret"

FULL = {
    "train_photos_per_label": None,  # the whole data set
    "preferences": PREFERENCES,
    "retrain_fraction": 0.10,
    "import_images": 1000,
    "gallery_rows": 20_000,
    "gallery_repeats": 7,
    "predict_requests": 200,
    "predict_concurrent_requests": 200,
    "predict_clients": 8,
    "predict_rounds": 4,
}
SMOKE = {
    "train_photos_per_label": 10,
    "preferences": ("balance",),
    "retrain_fraction": 0.10,
    "import_images": 20,
    "gallery_rows": 200,
    "gallery_repeats": 2,
    "predict_requests": 10,
    "predict_concurrent_requests": 16,
    "predict_clients": 8,
    "predict_rounds": 2,
}


def seconds_measure(preference: str, run: dict) -> str:
    """The seconds row's name; the first run in a fresh worker says so."""
    if run["first_run_in_worker"]:
        return f"{preference} seconds (fresh worker: torch import included)"
    return f"{preference} seconds"


def row(measure, figure, baseline=None, *, unit="", rule=None, limit=None, passed=None):
    """One line of the results table; a target line has a rule and passed."""
    line = {"measure": measure, "figure": figure, "baseline": baseline, "unit": unit}
    if rule is not None:
        line.update({"rule": rule, "limit": limit, "passed": bool(passed)})
    return line


class Bench:
    def __init__(self, args, sizes: dict, work: Path, shared: Path):
        self.args = args
        self.sizes = sizes
        self.work = work
        self.shared = shared
        self.dataset = shared / "datasets" / "hymenoptera"
        self.var_dir = work / "var"
        self.env = studio_env(self.var_dir, shared)
        # The web server, the background worker and the baselines they are
        # compared with all run with bin/serve's environment.
        self.serve_env = serve_env(self.env)
        self.worker: BackgroundWorker | None = None
        self.state: dict = {}

    # -- set-up ---------------------------------------------------------------

    def setup(self) -> None:
        os.environ.update(self.env)
        sys.path.insert(0, str(REPO))
        manage(self.env, "migrate", "--noinput").check()
        manage(self.env, "collectstatic", "--noinput", "--verbosity", "0").check()

        import django

        django.setup()
        from django.contrib.auth import get_user_model
        from rest_framework.authtoken.models import Token

        self.user = get_user_model().objects.create_user(USERNAME, password=PASSWORD)
        self.token = Token.objects.create(user=self.user).key

    def import_images(self, project: str, folder: Path):
        return manage(
            self.env,
            "import_images",
            "--project",
            project,
            "--create",
            "--owner",
            USERNAME,
            "--labels-from-folders",
            str(folder),
        ).check()

    def project(self, name: str):
        from projects.models import Project

        return Project.objects.get(owner=self.user, name=name)

    def train_photos_folder(self) -> Path:
        """The photos the training benchmark imports."""
        per_label = self.sizes["train_photos_per_label"]
        if per_label is None:
            return self.dataset

        folder = self.work / "train-photos"
        by_label: dict[str, list[Path]] = {}
        for label, path in labeled_photos(self.dataset / "train"):
            if path.suffix.lower() in {".jpg", ".jpeg"}:
                by_label.setdefault(label, []).append(path)
        for label, paths in by_label.items():
            (folder / label).mkdir(parents=True, exist_ok=True)
            for path in paths[:per_label]:
                shutil.copyfile(path, folder / label / path.name)
        return folder

    # -- import ---------------------------------------------------------------

    def bench_import(self) -> dict:
        total = self.sizes["import_images"]
        folder = self.work / "import-set"
        files = write_photo_set(labeled_photos(self.dataset), total, folder)

        # Baseline: plain Pillow, in this process: open, decode, resize.
        started = time.perf_counter()
        for path in files:
            with PILImage.open(path) as image:
                image.load()
                image.thumbnail((256, 256))
        baseline_s = time.perf_counter() - started
        baseline_rate = len(files) / baseline_s

        measured = self.import_images("bench-import", folder)
        project = self.project("bench-import")
        accepted = project.images.count()
        rate = accepted / measured.seconds
        limit = baseline_rate / 3
        # What the command costs before it imports anything (Django start-up).
        startup = manage(self.env, "import_images", "--help").check().seconds
        working_rate = accepted / max(measured.seconds - startup, 1e-6)
        return {
            "figures": {
                "files": len(files),
                "accepted": accepted,
                "seconds": measured.seconds,
                "images_per_s": rate,
                "startup_seconds": startup,
                "images_per_s_after_startup": working_rate,
                "peak_rss_mb": measured.peak_rss_mb,
                "command_summary": measured.stdout.strip().splitlines()[-3:],
            },
            "baseline": {
                "what": "Pillow open + load() + thumbnail(256) of the same files",
                "seconds": baseline_s,
                "images_per_s": baseline_rate,
            },
            "rows": [
                row(
                    "import images/s",
                    rate,
                    baseline_rate,
                    unit="img/s",
                    rule=">= baseline / 3",
                    limit=limit,
                    passed=rate >= limit and accepted == len(files),
                ),
                row(
                    "import images/s after start-up",
                    working_rate,
                    baseline_rate,
                    unit="img/s",
                ),
                row("accepted of files", accepted, len(files)),
            ],
        }

    # -- train ----------------------------------------------------------------

    def start_worker(self) -> BackgroundWorker:
        """The background worker the train and retrain runs are queued to."""
        if self.worker is None:
            self.worker = BackgroundWorker(self.env, self.work / "qcluster.log")
            self.worker.start()
        return self.worker

    def stop_worker(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.state["worker_stopped"] = self.worker.proc.returncode is not None

    def train(
        self,
        project_name: str,
        preference: str,
        *,
        dataset_version=None,
        incremental_from: str | None = None,
        timeout: float = 3600,
    ) -> dict:
        """Queue a run to the running worker as the Train button does; wait for it.

        The seconds run from just before queueing (publishing the dataset
        version, when the run publishes one, included) to the run's
        `finished_at`, written by the worker.
        """
        from training.models import TrainingRun
        from training.runs import start_training

        worker = self.start_worker()
        project = self.project(project_name)
        source = None
        if incremental_from:
            source = project.training_runs.get(version=incremental_from)
        first_in_worker = not self.state.get("worker_runs")
        peak_reset = worker.reset_peak_rss()

        queued_at = time.time()
        started = time.perf_counter()
        run = start_training(
            project,
            user=self.user,
            dataset_version=dataset_version,
            preference=preference,
            incremental_from=source,
        )
        queued = time.perf_counter() - started
        deadline = started + timeout
        final = {*TrainingRun.Status.values} - {*TrainingRun.ACTIVE_STATUSES}
        while True:
            status = TrainingRun.objects.values_list("status", flat=True).get(pk=run.pk)
            if status in final:
                seen_final = time.perf_counter() - started
                break
            worker.check_alive()
            if time.perf_counter() > deadline:
                raise RuntimeError(f"Training {run.version} still {status}")
            time.sleep(0.1)
        peaks = worker.peak_rss()
        run.refresh_from_db()
        if not run.is_usable:
            raise RuntimeError(
                f"Training {run.version} {run.status}: {run.status_message}"
            )

        self.state["worker_runs"] = self.state.get("worker_runs", 0) + 1
        peak = max(peaks.values())
        cumulative = max(peak, self.state.get("worker_peak_rss_mb", 0.0))
        self.state["worker_peak_rss_mb"] = cumulative
        return {
            "version": run.version,
            "status": run.status,
            "preference": run.preference,
            "dataset_version": run.dataset_version.name,
            "accuracy": run.accuracy,
            "f1": run.f1,
            "seconds": run.finished_at.timestamp() - queued_at,
            "seconds_until_seen_final": seen_final,
            "queue_call_seconds": queued,
            "waited_in_queue_seconds": run.started_at.timestamp() - queued_at,
            "run_seconds": (run.finished_at - run.started_at).total_seconds(),
            "first_run_in_worker": first_in_worker,
            "peak_rss_mb": peak,
            "peak_rss_reset_before_run": peak_reset,
            "peak_rss_cumulative_mb": cumulative,
            "peak_rss_by_process_mb": {str(pid): mb for pid, mb in peaks.items()},
            "worker_pid": worker.pid,
            "timings": run.metrics.get("timings", {}),
            "images": run.dataset_version.image_count,
            "model_file": run.model_file,
        }

    def bench_train(self) -> dict:
        from training.models import Embedding

        folder = self.train_photos_folder()
        imported = self.import_images("bench", folder)
        project = self.project("bench")
        self.state["train_folder"] = folder

        runs: dict[str, dict] = {}
        baselines: list[dict] = []
        dataset_version = None
        for preference in self.sizes["preferences"]:
            # The embedding cache would make a later run faster: every
            # preference is measured as a first run.
            Embedding.objects.all().delete()
            runs[preference] = self.train(
                "bench", preference, dataset_version=dataset_version
            )
            if dataset_version is None:
                # The same split for every preference and for the baseline.
                dataset_version = project.dataset_versions.get(
                    name=runs[preference]["dataset_version"]
                )
            # The bare pipeline runs after the first run (once there is a
            # dataset version) and right after balance; the faster of the two
            # is the baseline, so a busy moment cannot flatter the studio.
            if preference == "balance" or len(runs) == 1:
                baselines.append(self.baseline_train(project, runs[preference]))
        baseline = min(baselines, key=lambda b: b["seconds"])
        baseline["runs"] = [
            {k: b[k] for k in ("seconds", "accuracy", "timings")} for b in baselines
        ]
        self.state["balance"] = runs["balance"]
        self.state["balance_model_file"] = runs["balance"]["model_file"]

        balance = runs["balance"]
        time_limit = 1.5 * baseline["seconds"]
        accuracy_limit = baseline["accuracy"] - 0.01
        timings = baseline["timings"]
        # The bare pipeline's own work, without torch's import and the
        # backbone's load, which a warm worker has already paid.
        baseline["work_seconds"] = (
            timings["decode_s"] + timings["embed_s"] + timings["fit_s"]
        )
        rows = [
            row(
                seconds_measure("balance", balance),
                balance["seconds"],
                baseline["seconds"],
                unit="s",
                rule="<= 1.5 x baseline",
                limit=time_limit,
                passed=balance["seconds"] <= time_limit,
            ),
            row(
                "balance seconds vs bare decode+embed+fit",
                balance["seconds"],
                baseline["work_seconds"],
                unit="s",
            ),
            row(
                "balance accuracy",
                balance["accuracy"],
                baseline["accuracy"],
                rule=">= baseline - 0.01",
                limit=accuracy_limit,
                passed=balance["accuracy"] >= accuracy_limit,
            ),
        ]
        for preference in sorted(runs, key=lambda p: p != "balance"):
            run = runs[preference]
            if preference != "balance":
                rows += [
                    row(
                        f"{preference} accuracy",
                        run["accuracy"],
                        baseline["accuracy"],
                    ),
                    row(
                        seconds_measure(preference, run),
                        run["seconds"],
                        baseline["seconds"],
                        unit="s",
                    ),
                ]
            rows += [
                row(f"{preference} macro F1", run["f1"], baseline["f1"]),
                row(
                    f"{preference} peak RSS of the worker",
                    run["peak_rss_mb"],
                    baseline["peak_rss_mb"],
                    unit="MB",
                ),
            ]
        first = next(iter(runs))
        return {
            "figures": {
                "images_imported": project.images.count(),
                "import_seconds": imported.seconds,
                "worker": {
                    "command": "manage.py qcluster",
                    "pid": self.worker.pid,
                    "malloc_arena_max": self.worker.env.get("MALLOC_ARENA_MAX"),
                    "first_run": first,
                },
                "runs": runs,
            },
            "baseline": baseline,
            "rows": rows,
        }

    def baseline_train(self, project, run: dict) -> dict:
        """The bare pipeline on the very split the studio trained on."""
        from projects import storage
        from training.ml.recipes import get_recipe

        version = project.dataset_versions.get(name=run["dataset_version"])
        items = [
            {
                "path": str(storage.media_path(item.file)),
                "label": item.label_name,
                "usage": item.usage,
            }
            for item in version.items.all()
        ]
        manifest = self.work / "baseline-train.json"
        manifest.write_text(
            json.dumps(
                {"backbone": get_recipe(run["preference"]).backbone, "items": items}
            )
        )
        measured = run_measured(
            [PYTHON, str(BENCH_DIR / "baseline_train.py"), str(manifest)],
            self.serve_env,
        ).check()
        answer = measured.last_json()
        answer.update(
            {
                "what": "bench/baseline_train.py: Pillow decode, same backbone, "
                "L-BFGS logistic regression, same split (dataset version "
                f"{version.name})",
                "process_seconds": measured.seconds,
                "peak_rss_mb": measured.peak_rss_mb,
            }
        )
        return answer

    # -- retrain --------------------------------------------------------------

    def bench_retrain(self) -> dict:
        project = self.project("bench")
        first = self.state["balance"]
        labeled = project.images.alive().labeled().count()
        extra = max(2, math.ceil(labeled * self.sizes["retrain_fraction"]))

        sources = [
            (label, path)
            for label, path in labeled_photos(self.state["train_folder"])
            if path.suffix.lower() in {".jpg", ".jpeg"}
        ]
        # Alternate labels so both grow by about the same number of photos.
        by_label: dict[str, list] = {}
        for label, path in sources:
            by_label.setdefault(label, []).append((label, path))
        mixed = [
            pair for group in zip(*by_label.values(), strict=False) for pair in group
        ]
        folder = self.work / "retrain-set"
        write_photo_set(mixed, extra, folder, copies_only=True, variant_base=1000)
        self.import_images("bench", folder)
        added = project.images.alive().labeled().count() - labeled

        # Queued to the same worker, now warm: torch imported, backbone loaded.
        run = self.train("bench", "balance", incremental_from=first["version"])
        limit = 0.30 * first["seconds"]
        return {
            "figures": {"images_added": added, "run": run},
            "baseline": {
                "what": "the first balance run of the train benchmark",
                "seconds": first["seconds"],
                "accuracy": first["accuracy"],
            },
            "rows": [
                row(
                    "incremental seconds",
                    run["seconds"],
                    first["seconds"],
                    unit="s",
                    rule="<= 0.30 x first run",
                    limit=limit,
                    passed=run["seconds"] <= limit,
                ),
                row("incremental accuracy", run["accuracy"], first["accuracy"]),
                row("images added", added, labeled),
            ],
        }

    # -- gallery --------------------------------------------------------------

    def make_gallery_project(self, name: str, rows: int):
        """A project with `rows` image rows sharing a few real files."""
        from projects import storage
        from projects.models import Image, Label, Project

        project = Project.objects.create(owner=self.user, name=name)
        labels = [
            Label.objects.create(project=project, name=label, color=color)
            for label, color in (("ants", "#e6194b"), ("bees", "#3cb44b"))
        ]
        photos = [p for _, p in labeled_photos(self.dataset) if p.suffix == ".jpg"][:4]
        files = []
        for path in photos:
            data = path.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            original = storage.original_name_for(project.pk, digest, "jpg")
            thumbnail = storage.thumbnail_name_for(project.pk, digest)
            storage.write_file(original, data)
            with PILImage.open(path) as image:
                size = image.size
                image.thumbnail((256, 256))
                target = storage.media_path(thumbnail)
                target.parent.mkdir(parents=True, exist_ok=True)
                image.convert("RGB").save(target, "JPEG", quality=85)
            files.append((original, thumbnail, size, len(data)))

        batch = []
        for i in range(rows):
            original, thumbnail, (width, height), size_bytes = files[i % len(files)]
            # 40% ants, 40% bees, 20% not labeled yet.
            label = (labels[0], labels[1], labels[0], labels[1], None)[i % 5]
            batch.append(
                Image(
                    project=project,
                    label=label,
                    file=original,
                    thumbnail=thumbnail,
                    original_name=f"photo-{i:05d}.jpg",
                    sha256=f"{i:064x}",
                    width=width,
                    height=height,
                    format="JPEG",
                    size_bytes=size_bytes,
                )
            )
        Image.objects.bulk_create(batch, batch_size=2000)
        return project, labels

    def gallery_urls(self, project, label) -> dict[str, str]:
        from django.urls import reverse

        from labeling.views import GRID_PAGE_SIZE
        from projects.image_views import IMAGES_PER_PAGE

        count = project.images.alive().count()
        last = max(1, math.ceil(count / IMAGES_PER_PAGE))
        labeled = project.images.alive().filter(label=label).count()
        last_labeled = max(1, math.ceil(labeled / GRID_PAGE_SIZE))
        images = reverse("projects:images", args=[project.pk])
        labeling = reverse("labeling:label", args=[project.pk])
        return {
            "gallery first page": f"{images}?page=1",
            "gallery middle page": f"{images}?page={max(1, last // 2)}",
            "gallery last page": f"{images}?page={last}",
            "labeling, label filter": f"{labeling}?label={label.pk}",
            "labeling, label filter, last page": (
                f"{labeling}?label={label.pk}&page={last_labeled}"
            ),
        }

    def time_pages(self, client, urls: dict[str, str], repeats: int) -> dict:
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        pages = {}
        for name, url in urls.items():
            client.get(url)  # warm caches, as a user's second visit would
            seconds, queries = [], []
            for _ in range(repeats):
                with CaptureQueriesContext(connection) as captured:
                    started = time.perf_counter()
                    response = client.get(url)
                    seconds.append(time.perf_counter() - started)
                if response.status_code != 200:
                    raise RuntimeError(f"{url} answered {response.status_code}")
                queries.append(len(captured.captured_queries))
            pages[name] = {
                "url": url,
                "median_ms": statistics.median(seconds) * 1000,
                "max_ms": max(seconds) * 1000,
                "queries": max(queries),
                "bytes": len(response.content),
            }
        return pages

    def bench_gallery(self) -> dict:
        from django.test import Client

        rows_wanted = self.sizes["gallery_rows"]
        repeats = self.sizes["gallery_repeats"]
        project, labels = self.make_gallery_project("bench-gallery", rows_wanted)
        small, small_labels = self.make_gallery_project("bench-gallery-small", 30)
        self.state["gallery_project"] = project
        self.state["gallery_label"] = labels[0]

        client = Client(HTTP_HOST="127.0.0.1")
        client.force_login(self.user)
        self.state["session_cookie"] = client.cookies["sessionid"].value
        pages = self.time_pages(client, self.gallery_urls(project, labels[0]), repeats)
        small_pages = self.time_pages(
            client, self.gallery_urls(small, small_labels[0]), repeats
        )

        rows = []
        for name, page in pages.items():
            rows.append(
                row(
                    f"{name} time",
                    page["median_ms"],
                    small_pages[name]["median_ms"],
                    unit="ms",
                    rule="< 100 ms",
                    limit=100,
                    passed=page["median_ms"] < 100,
                )
            )
        for name, page in pages.items():
            rows.append(
                row(
                    f"{name} queries",
                    page["queries"],
                    small_pages[name]["queries"],
                    rule="= 30-image project",
                    limit=small_pages[name]["queries"],
                    passed=page["queries"] == small_pages[name]["queries"],
                )
            )
        gallery_counts = {
            page["queries"]
            for name, page in pages.items()
            if name.startswith("gallery")
        }
        rows.append(
            row(
                "gallery queries first = middle = last",
                len(gallery_counts),
                1,
                rule="one distinct count",
                limit=1,
                passed=len(gallery_counts) == 1,
            )
        )
        return {
            "figures": {"rows": project.images.count(), "pages": pages},
            "baseline": {
                "what": "the same pages of a project with 30 image rows",
                "pages": small_pages,
            },
            "rows": rows,
        }

    # -- predict and memory (one running web server) --------------------------

    def bench_service(self) -> tuple[dict, dict]:
        """Serve the gallery, then deploy and predict, in one gunicorn worker.

        The bare baseline loop runs in its own process, in rounds alternating
        with rounds of HTTP requests, so both see the same moments of a busy
        machine.
        """
        photo = typical_photo(self.dataset)
        log = self.work / "gunicorn.log"
        with WebServer(self.env, log) as server, self.bare_predictor(photo) as bare:
            pid = server.worker_pid
            arenas = environment_of(pid).get("MALLOC_ARENA_MAX")
            idle_rss = rss_mb(pid)
            web = self.serve_gallery(server)
            web_rss, web_torch = rss_mb(pid), torch_loaded(pid)

            service_id, deploy_s = self.deploy(server)
            client = PredictClient(server, self.token, service_id, photo)
            client.send(5)  # warm-up; the bare loop warmed up when it started
            sequential, baseline = self.interleaved(client, bare)
            service_rss, service_torch = rss_mb(pid), torch_loaded(pid)
            concurrent = client.concurrent(
                self.sizes["predict_clients"],
                self.sizes["predict_concurrent_requests"],
            )
            concurrent_rss = rss_mb(pid)
        baseline["peak_rss_mb"] = bare.peak_rss_mb

        from django.conf import settings

        predict_limit = 1.5 * baseline["p50_ms"] + 5
        clients = concurrent["clients"]
        prediction = {
            "figures": {
                "photo": photo.name,
                "server_malloc_arena_max": arenas,
                "server_prediction_threads": settings.PREDICTION_THREADS,
                "deploy_seconds": deploy_s,
                "sequential": sequential,
                "concurrent": concurrent,
            },
            "baseline": baseline,
            "rows": [
                row(
                    "p50 latency, sequential",
                    sequential["p50_ms"],
                    baseline["p50_ms"],
                    unit="ms",
                    rule="<= 1.5 x baseline + 5 ms",
                    limit=predict_limit,
                    passed=sequential["p50_ms"] <= predict_limit
                    and sequential["errors"] == 0,
                ),
                row(
                    "p95 latency, sequential",
                    sequential["p95_ms"],
                    baseline["p95_ms"],
                    unit="ms",
                ),
                row(
                    "requests/s, sequential",
                    sequential["requests_per_s"],
                    baseline["predictions_per_s"],
                    unit="req/s",
                ),
                row(
                    f"p50 latency, {clients} clients",
                    concurrent["p50_ms"],
                    baseline["p50_ms"],
                    unit="ms",
                ),
                row(
                    f"p95 latency, {clients} clients",
                    concurrent["p95_ms"],
                    baseline["p95_ms"],
                    unit="ms",
                ),
                row(
                    f"requests/s, {clients} clients",
                    concurrent["requests_per_s"],
                    baseline["predictions_per_s"],
                    unit="req/s",
                ),
            ],
        }

        bare_rss = baseline["rss_mb"]
        service_limit = web_rss + bare_rss
        memory = {
            "figures": {
                "web_idle_rss_mb": idle_rss,
                "web_rss_mb": web_rss,
                "web_torch_loaded": web_torch,
                "web_pages": web,
                "service_rss_mb": service_rss,
                "service_torch_loaded": service_torch,
                "service_rss_after_concurrent_mb": concurrent_rss,
            },
            "baseline": {
                "what": "web: the same worker just started, before any request; "
                "service: a bare process holding the model and predicting one "
                "photo at a time (baseline_predict.py)",
                "web_idle_rss_mb": idle_rss,
                "bare_predictor_rss_mb": bare_rss,
            },
            "rows": [
                row(
                    "web worker RSS after the gallery",
                    web_rss,
                    idle_rss,
                    unit="MB",
                    rule="torch not loaded",
                    limit=None,
                    passed=not web_torch,
                ),
                row(
                    "service worker RSS after sequential predictions",
                    service_rss,
                    bare_rss,
                    unit="MB",
                    rule="<= web RSS + bare predictor RSS",
                    limit=service_limit,
                    passed=service_rss <= service_limit and service_torch,
                ),
                row(
                    f"service worker RSS after {clients} clients",
                    concurrent_rss,
                    bare_rss,
                    unit="MB",
                ),
            ],
        }
        return prediction, memory

    def serve_gallery(self, server: WebServer) -> dict:
        project = self.state["gallery_project"]
        urls = self.gallery_urls(project, self.state["gallery_label"])
        headers = {"Cookie": f"sessionid={self.state['session_cookie']}"}
        pages = {}
        for name, url in urls.items():
            times = []
            for _ in range(3):
                status, _, seconds = server.request("GET", url, headers=headers)
                if status != 200:
                    raise RuntimeError(f"{url} answered {status} over HTTP")
                times.append(seconds * 1000)
            pages[name] = {"url": url, "median_ms_over_http": statistics.median(times)}
        return pages

    def deploy(self, server: WebServer) -> tuple[int, float]:
        """Deploy the balance version through the API, as a user's program would."""
        from training.models import TrainingRun

        run = TrainingRun.objects.get(
            project=self.project("bench"), version=self.state["balance"]["version"]
        )
        headers = {
            "Authorization": f"Token {self.token}",
            "Content-Type": "application/json",
        }
        started = time.perf_counter()
        status, body, _ = server.request(
            "POST",
            "/api/services",
            body=json.dumps({"training_run": run.pk}).encode(),
            headers=headers,
        )
        if status != 201:
            raise RuntimeError(f"Deploying answered {status}: {body[:500]!r}")
        service = json.loads(body)
        deadline = time.monotonic() + 300
        while service["status"] == "deploying" and time.monotonic() < deadline:
            time.sleep(0.2)
            _, body, _ = server.request(
                "GET", f"/api/services/{service['id']}", headers=headers
            )
            service = json.loads(body)
        if service["status"] != "running":
            raise RuntimeError(f"The service did not start: {service}")
        return service["id"], time.perf_counter() - started

    def bare_predictor(self, photo: Path) -> BarePredictor:
        from projects import storage

        model = storage.media_path(self.state["balance_model_file"])
        return BarePredictor(model, photo, self.serve_env)

    def interleaved(self, client: PredictClient, bare: BarePredictor):
        """Sequential requests and the bare loop, in alternating rounds."""
        total = self.sizes["predict_requests"]
        rounds = self.sizes["predict_rounds"]
        latencies, errors, labels, walls = [], [], [], []
        bare_latencies = []
        for i in range(rounds):
            count = total // rounds + (1 if i < total % rounds else 0)
            bare_latencies += bare.run(count)
            started = time.perf_counter()
            client.send(count, latencies, errors, labels)
            walls.append(time.perf_counter() - started)

        sequential = {
            "requests": len(latencies),
            "errors": len(errors),
            "p50_ms": percentile(latencies, 0.5),
            "p95_ms": percentile(latencies, 0.95),
            "requests_per_s": len(latencies) / sum(walls),
            "predicted_label": max(set(labels), key=labels.count) if labels else None,
            "expected_label": client.expected,
            "rounds": rounds,
        }
        baseline = {
            "what": "bench/baseline_predict.py: load_predictor(model)"
            ".predict([image]) in a loop on the decoded photo, in rounds "
            "alternating with the HTTP rounds",
            "predictions": len(bare_latencies),
            "p50_ms": percentile(bare_latencies, 0.5),
            "p95_ms": percentile(bare_latencies, 0.95),
            "predictions_per_s": len(bare_latencies) / (sum(bare_latencies) / 1000),
            "rss_mb": bare.rss_mb,
            **bare.facts,
        }
        return sequential, baseline


class BarePredictor:
    """bench/baseline_predict.py --serve: the model in a bare process."""

    def __init__(self, model: Path, photo: Path, env: dict[str, str]):
        self.args = [
            PYTHON,
            str(BENCH_DIR / "baseline_predict.py"),
            str(model),
            str(photo),
            "--serve",
        ]
        self.env = env
        self.rss_mb = 0.0
        self.peak_rss_mb = 0.0

    def __enter__(self) -> BarePredictor:
        self.proc = subprocess.Popen(
            self.args, env=self.env, cwd=REPO, stdin=PIPE, stdout=PIPE, text=True
        )
        self.facts = json.loads(self._line())
        return self

    def _line(self) -> str:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{' '.join(self.args)} stopped early")
        return line

    def run(self, count: int) -> list[float]:
        self.proc.stdin.write(f"{count}\n")
        self.proc.stdin.flush()
        answer = json.loads(self._line())
        self.rss_mb = answer["rss_mb"]
        return answer["latencies"]

    def __exit__(self, *exc) -> None:
        self.proc.stdin.close()
        try:
            _, _, usage = os.wait4(self.proc.pid, 0)
            self.peak_rss_mb = usage.ru_maxrss / 1024
        except ChildProcessError:
            pass
        self.proc.returncode = 0
        self.proc.stdout.close()


class PredictClient:
    """Sends the prediction request a user's program would, over loopback."""

    def __init__(self, server: WebServer, token: str, service_id: int, photo: Path):
        self.server = server
        self.body, content_type = multipart(
            "images", photo.name, photo.read_bytes(), "image/jpeg"
        )
        self.headers = {
            "Authorization": f"Token {token}",
            "Content-Type": content_type,
        }
        self.path = f"/api/services/{service_id}/predict"
        self.expected = photo.parent.name

    def send(self, count: int, latencies=None, errors=None, labels=None) -> None:
        """`count` requests, one after the other, on one keep-alive connection."""
        latencies = [] if latencies is None else latencies
        errors = [] if errors is None else errors
        labels = [] if labels is None else labels
        conn = self.server.connection()
        try:
            for _ in range(count):
                status, answer, seconds = self.server.request(
                    "POST", self.path, body=self.body, headers=self.headers, conn=conn
                )
                latencies.append(seconds * 1000)
                if status == 200:
                    labels.append(json.loads(answer)["predicted_label"])
                else:
                    errors.append(status)
        finally:
            conn.close()

    def sequential(self, count: int) -> dict:
        latencies, errors, labels = [], [], []
        started = time.perf_counter()
        self.send(count, latencies, errors, labels)
        wall = time.perf_counter() - started
        return {
            "requests": len(latencies),
            "errors": len(errors),
            "p50_ms": percentile(latencies, 0.5),
            "p95_ms": percentile(latencies, 0.95),
            "requests_per_s": len(latencies) / wall,
            "predicted_label": max(set(labels), key=labels.count) if labels else None,
            "expected_label": self.expected,
        }

    def concurrent(self, clients: int, total: int) -> dict:
        latencies, errors, labels = [], [], []
        threads = [
            threading.Thread(
                target=self.send, args=(total // clients, latencies, errors, labels)
            )
            for _ in range(clients)
        ]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - started
        return {
            "clients": clients,
            "requests": len(latencies),
            "errors": len(errors),
            "p50_ms": percentile(latencies, 0.5),
            "p95_ms": percentile(latencies, 0.95),
            "requests_per_s": len(latencies) / wall,
        }


def show(value, unit=""):
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        text = f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    else:
        text = str(value)
    return f"{text} {unit}".strip()


def table_lines(results: dict) -> list[tuple[str, ...]]:
    """(benchmark, measure, figure, baseline, target, result) per row."""
    lines = []
    for name, result in results["benchmarks"].items():
        if "error" in result:
            lines.append((name, "ERROR", result["summary"][:70], "", "", "FAIL"))
            continue
        for line in result["rows"]:
            unit = line["unit"]
            target, verdict = "", ""
            if "rule" in line:
                target = line["rule"]
                if line["limit"] is not None:
                    target += f" ({show(line['limit'], unit)})"
                verdict = "pass" if line["passed"] else "FAIL"
            lines.append(
                (
                    name,
                    line["measure"],
                    show(line["figure"], unit),
                    show(line["baseline"], unit),
                    target,
                    verdict,
                )
            )
    return lines


HEADER = ("benchmark", "measure", "figure", "baseline", "target", "result")


def print_table(results: dict) -> None:
    lines = [HEADER, *table_lines(results)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER))]
    for i, line in enumerate(lines):
        cells = (cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        print("  ".join(cells).rstrip())
        if i == 0:
            print("  ".join("-" * width for width in widths))


README_START = "<!-- latest-results:start -->"
README_END = "<!-- latest-results:end -->"


def update_readme(results: dict, readme: Path) -> None:
    """Put the latest figures and the machine they came from in the README."""
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        return
    m = results["machine"]
    body = [
        README_START,
        f"Measured {m['date']} on {m['cpu']}, {m['cores']} cores, "
        f"{m['ram_gb']} GB RAM, Python {m['python']} (load average at the start: "
        f"{', '.join(str(x) for x in m['load_average_at_start'])}; at the end: "
        f"{', '.join(str(x) for x in results.get('load_average_at_end', []))}); "
        f"the whole run took {results['seconds']:.0f} s.",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
    ]
    body += ["| " + " | ".join(line) + " |" for line in table_lines(results)]
    body.append(README_END)
    before = text.split(README_START)[0]
    after = text.split(README_END, 1)[1]
    readme.write_text(before + "\n".join(body) + after)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="Tiny sizes.")
    parser.add_argument(
        "--out",
        type=Path,
        help="Where to write the results (default: bench/results.json; with "
        "--smoke, exeml-bench-smoke.json in the work folder or the system's "
        "temporary folder).",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        help="Folder for the throwaway studio (default: a new temporary folder, "
        "removed at the end).",
    )
    parser.add_argument(
        "--shared",
        type=Path,
        help="The shared folder holding datasets/hymenoptera (default: "
        "EXEML_SHARED_DIR, else ../shared beside the repository).",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=BENCHMARKS,
        help="Run only these benchmarks (train is added when another needs it).",
    )
    parser.add_argument("--keep", action="store_true", help="Keep the work folder.")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    sizes = SMOKE if args.smoke else FULL
    shared = args.shared or Path(
        os.environ.get("EXEML_SHARED_DIR") or REPO.parent / "shared"
    )
    shared = shared.resolve()
    if not (shared / "datasets" / "hymenoptera").is_dir():
        print(f"No datasets/hymenoptera under {shared}", file=sys.stderr)
        return 2

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="exeml-bench-"))
    if (work / "var").exists():
        print(f"{work} already holds a benchmark studio; give an empty folder.")
        return 2
    work.mkdir(parents=True, exist_ok=True)
    if args.out:
        out = args.out
    elif args.smoke:
        out = (args.work_dir or Path(tempfile.gettempdir())) / "exeml-bench-smoke.json"
    else:
        out = BENCH_DIR / "results.json"

    selected = set(args.only or BENCHMARKS)
    if selected & {"retrain", "predict", "memory"}:
        selected.add("train")
    if "memory" in selected or "predict" in selected:
        selected |= {"gallery", "predict", "memory"}

    results = {
        "mode": "smoke" if args.smoke else "full",
        "machine": machine(),
        "sizes": {k: list(v) if isinstance(v, tuple) else v for k, v in sizes.items()},
        "benchmarks": {},
    }
    bench = Bench(args, sizes, work, shared)
    started = time.perf_counter()
    try:
        bench.setup()
        steps = [
            ("import", bench.bench_import),
            ("train", bench.bench_train),
            ("retrain", bench.bench_retrain),
            ("gallery", bench.bench_gallery),
        ]
        for name, step in steps:
            if name == "gallery":
                # Train and retrain are done: the worker would only add noise.
                bench.stop_worker()
            if name in selected:
                print(f"== {name}", flush=True)
                results["benchmarks"][name] = guarded(step)
        if "predict" in selected:
            print("== predict and memory", flush=True)
            outcome = guarded(bench.bench_service, pair=True)
            results["benchmarks"]["predict"], results["benchmarks"]["memory"] = outcome
    finally:
        bench.stop_worker()
        if bench.worker is not None:
            results["background_worker"] = {
                "pid": bench.worker.pid,
                "stopped": bench.state.get("worker_stopped", False),
                "runs": bench.state.get("worker_runs", 0),
            }
        # Queueing runs in this process, as in the web process: still no torch.
        results["driver_imported_torch"] = "torch" in sys.modules
        results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        results["seconds"] = time.perf_counter() - started
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2, default=str) + "\n")
        if not args.keep and not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)

    if out == BENCH_DIR / "results.json":
        update_readme(results, BENCH_DIR / "README.md")
    print()
    print_table(results)
    print(f"\nResults written to {out} ({results['seconds']:.0f} s)")
    failed = [
        name for name, result in results["benchmarks"].items() if "error" in result
    ]
    return 1 if failed else 0


def guarded(step, pair=False):
    """Run one benchmark; a crash is recorded as its result, not the run's end."""
    try:
        return step()
    except Exception as exc:
        summary = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        error = {"error": traceback.format_exc(), "summary": summary}
        print(error["error"], file=sys.stderr)
        return (error, error) if pair else error


if __name__ == "__main__":
    sys.exit(main())
