"""The worker task that trains one training version.

`run_training` runs in a django-q worker process (or in the `train --wait`
command's own process). It claims the queued run, hands the dataset version's
images to `training.ml.engine.train`, and writes what happens to the run as it
goes: phase, progress, epoch figures, a log a user can read, and a heartbeat at
least every few seconds so a run whose worker dies is noticed
(`training.runs.mark_stale_runs_failed`). torch is imported inside the task
only, never when Django starts.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.utils import timezone

from projects import storage
from training.models import DatasetVersionItem, TrainingRun
from training.runs import mark_stale_runs_failed

logger = logging.getLogger(__name__)

# The run's row is written at most this often while training (and whenever the
# phase changes); each write is also the heartbeat.
WRITE_INTERVAL_S = 1.0
# How often the run's row is read to see whether the user pressed Cancel.
CANCEL_CHECK_INTERVAL_S = 1.0

OUT_OF_MEMORY_MESSAGE = (
    "Out of memory: the worker ran out of memory while training. Choose the "
    "performance_first preference or train on fewer images, or give the worker "
    "more memory."
)


class RunReporter:
    """Writes a running run's progress and log to its row, throttled."""

    def __init__(self, run: TrainingRun):
        self.run_id = run.pk
        self.lines = run.log.splitlines() if run.log else []
        self.fields: dict = {}
        self._written_at = 0.0
        self._checked_at = 0.0
        self._cancelled = False

    def log(self, message: str) -> None:
        stamp = timezone.localtime().strftime("%H:%M:%S")
        self.lines.append(f"{stamp}  {message}")
        logger.info("Training run %s: %s", self.run_id, message)
        self.flush(force=False)

    def progress(self, progress) -> None:
        phase_changed = progress.phase != self.fields.get("phase")
        self.fields.update(phase=progress.phase[:40], progress=progress.fraction)
        if progress.epoch:
            self.fields.update(
                epoch=progress.epoch,
                epochs_total=progress.epochs_total,
                loss=progress.loss,
                val_accuracy=progress.val_accuracy,
                history=progress.history,
            )
        changed_kind = phase_changed and not progress.phase.startswith("Preparing")
        self.flush(force=changed_kind)

    def should_cancel(self) -> bool:
        now = time.monotonic()
        if not self._cancelled and now - self._checked_at >= CANCEL_CHECK_INTERVAL_S:
            self._checked_at = now
            # A run deleted with its project stops as a cancelled one does.
            self._cancelled = not TrainingRun.objects.filter(
                pk=self.run_id, cancel_requested=False
            ).exists()
        return self._cancelled

    def flush(self, force: bool = True) -> int:
        """Write the figures so far; the number of rows written (0: run deleted)."""
        if not force and time.monotonic() - self._written_at < WRITE_INTERVAL_S:
            return 1
        written = TrainingRun.objects.filter(pk=self.run_id).update(
            log="\n".join(self.lines), heartbeat_at=timezone.now(), **self.fields
        )
        self._written_at = time.monotonic()
        return written

    def finish(self, status: str, message: str = "", **fields) -> bool:
        """Record the end of the run; False when the run no longer exists."""
        self.fields.update(fields)
        self.fields.update(
            status=status, status_message=message, finished_at=timezone.now()
        )
        return bool(self.flush())


def run_training(run_id: int) -> str:
    """Train the queued run `run_id`; returns its final status."""
    from training.ml.runtime import prepare_process

    threads = prepare_process(settings.TRAINING_THREADS)
    mark_stale_runs_failed()

    now = timezone.now()
    claimed = TrainingRun.objects.filter(
        pk=run_id, status=TrainingRun.Status.QUEUED
    ).update(
        status=TrainingRun.Status.RUNNING,
        started_at=now,
        heartbeat_at=now,
        phase="Starting",
        progress=0.0,
    )
    if not claimed:
        # Cancelled while queued, or already handled by another worker.
        logger.info("Training run %s is no longer queued; nothing to do", run_id)
        return "skipped"

    run = TrainingRun.objects.select_related(
        "project", "dataset_version", "incremental_from"
    ).get(pk=run_id)
    reporter = RunReporter(run)
    from training.ml import engine

    try:
        status = _train(run, reporter, threads)
    except engine.TrainingCancelled:
        reporter.log("Cancelled; no model was saved.")
        reporter.finish(
            TrainingRun.Status.CANCELLED,
            "Cancelled while training; no model was saved.",
            phase="",
        )
        return TrainingRun.Status.CANCELLED.value
    except engine.TrainingError as exc:
        logger.warning("Training run %s failed: %s", run_id, exc)
        return _fail(reporter, str(exc))
    except MemoryError:
        logger.exception("Training run %s ran out of memory", run_id)
        return _fail(reporter, OUT_OF_MEMORY_MESSAGE)
    except Exception as exc:
        logger.exception("Training run %s failed", run_id)
        if "out of memory" in str(exc).lower():
            return _fail(reporter, OUT_OF_MEMORY_MESSAGE)
        return _fail(
            reporter,
            f"Training failed unexpectedly: {exc}. Start the training again; if "
            "it fails again, the worker's log has the details.",
        )
    return status


def _fail(reporter: RunReporter, message: str) -> str:
    reporter.log(f"Failed: {message}")
    reporter.finish(TrainingRun.Status.FAILED, message, phase="")
    return TrainingRun.Status.FAILED.value


def _device(run: TrainingRun, reporter: RunReporter) -> str:
    if run.flavor != TrainingRun.Flavor.GPU:
        return "cpu"

    import torch

    if torch.cuda.is_available():
        return "cuda"
    reporter.log("No GPU is usable by the training worker; training on the CPU.")
    return "cpu"


def training_items(dataset_version) -> list:
    """The engine's view of a dataset version: each item's file, label and set."""
    from training.ml.engine import TrainingItem

    return [
        TrainingItem(
            item_id=item.pk,
            path=item.file,
            name=item.original_name,
            sha256=item.sha256,
            label=item.label_name,
            is_validation=item.usage == DatasetVersionItem.Usage.EVAL,
        )
        for item in dataset_version.items.order_by("id")
    ]


def _train(run: TrainingRun, reporter: RunReporter, threads: int) -> str:
    from training.ml import engine
    from training.ml.cache import DatabaseEmbeddingCache

    version = run.dataset_version
    items = training_items(version)
    device = _device(run, reporter)
    where = "the GPU" if device == "cuda" else f"the CPU ({threads} threads)"
    reporter.log(
        f"Training {run.version} of “{run.project.name}”: "
        f"{run.get_preference_display()} preference, dataset version "
        f"{version.name} ({len(items)} images), time limit {run.max_minutes} "
        f"minutes, on {where}."
    )

    init_from = None
    source = run.incremental_from
    if source is not None:
        path = storage.media_path(source.model_file) if source.model_file else None
        if path is None or not path.is_file():
            raise engine.TrainingError(
                f"The model file of training version {source.version} is missing, "
                "so incremental training cannot start from it."
            )
        try:
            engine.load_checkpoint(path)
        except Exception:
            logger.exception("Could not read the model %s", source.model_file)
            raise engine.TrainingError(
                f"The model file of {source.version} is damaged or was written by "
                "an incompatible version, so incremental training cannot start "
                "from it; start from another version or from the pretrained network."
            )
        init_from = path
        reporter.log(f"Incremental training, starting from {source.version}.")

    model_file = storage.model_name_for(run.project_id, run.pk)
    result = engine.train(
        items,
        preference=run.preference,
        model_path=storage.media_path(model_file),
        time_limit_s=run.max_minutes * 60,
        init_from=init_from,
        should_cancel=reporter.should_cancel,
        progress=reporter.progress,
        log=reporter.log,
        cache=DatabaseEmbeddingCache(),
        device=device,
    )

    metrics = result.metrics
    if result.stopped_by_time_limit:
        status = TrainingRun.Status.STOPPED
        message = (
            f"Stopped by the time limit of {run.max_minutes} minutes; the best "
            "model so far was saved."
        )
        phase = "Stopped by the time limit"
    else:
        status, message, phase = TrainingRun.Status.SUCCEEDED, "", "Finished"
    last = result.history[-1] if result.history else {}
    recorded = reporter.finish(
        status,
        message,
        phase=phase,
        progress=1.0,
        model_file=model_file,
        model_size_bytes=result.model_size_bytes,
        label_names=result.label_names,
        metrics=metrics,
        history=result.history,
        epoch=last.get("epoch", 0),
        loss=last.get("loss"),
        val_accuracy=metrics["accuracy"],
        accuracy=metrics["accuracy"],
        precision=metrics["precision"],
        recall=metrics["recall"],
        f1=metrics["f1"],
    )
    if not recorded:
        # The run was deleted (with its project) while the model was saved.
        storage.media_path(model_file).unlink(missing_ok=True)
        logger.info("Training run %s was deleted while training", run.pk)
        return TrainingRun.Status.CANCELLED.value
    logger.info(
        "Training run %s %s: accuracy %.3f, model %s",
        run.pk,
        status,
        metrics["accuracy"],
        model_file,
    )
    return status.value
