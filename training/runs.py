"""Starting, cancelling and watching training runs (training versions).

`start_training()` is the one way in for the train page, the API and the
`train` command: it checks the project's readiness (`Project.readiness()`),
every parameter's range, publishes a dataset version from the current labels
when none is chosen, names the run V001, V002, ... and queues the worker task.
An incremental run never validates on images its source trained on: a version
published for it keeps the source's split, and a chosen version that breaks
this is refused. Nothing here imports torch.
"""

from __future__ import annotations

import logging
import math
import re
from datetime import timedelta
from functools import cache
from pathlib import Path

from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from projects import storage
from projects.models import Project
from training import deployment
from training.datasets import clean_train_ratio, publish_dataset_version
from training.models import (
    DEFAULT_TRAIN_RATIO,
    DEFAULT_TRAINING_MINUTES,
    MAX_TRAINING_MINUTES,
    MIN_TRAINING_MINUTES,
    DatasetVersion,
    DatasetVersionItem,
    Service,
    TrainingRun,
)

logger = logging.getLogger(__name__)

VERSION_PATTERN = re.compile(r"V(\d+)")
TASK_NAME = "training.tasks.run_training"


class NotReadyToTrain(ValidationError):
    """The project misses images or labels; `missing` lists what, in words."""

    def __init__(self, missing: list[str]):
        super().__init__({NON_FIELD_ERRORS: missing})
        self.missing = missing


def heartbeat_timeout_text() -> str:
    seconds = settings.TRAINING_HEARTBEAT_TIMEOUT
    if seconds < 60:
        return f"{seconds} seconds"
    if seconds < 120:
        return "a minute"
    return f"{seconds // 60} minutes"


def worker_died_message() -> str:
    return (
        "The training worker stopped unexpectedly (no sign of life for over "
        f"{heartbeat_timeout_text()}). Start the training again."
    )


TASK_FAILED_MESSAGE = (
    "The training worker could not run this training. Start the training again."
)


@cache
def gpu_available() -> bool:
    """Whether to offer the GPU flavor.

    The web process must not import torch, so it asks the NVIDIA driver
    instead: a GPU is offered when the driver lists one. If torch in the
    worker cannot use it after all, the run trains on the CPU and its log says
    so.
    """
    gpus = Path("/proc/driver/nvidia/gpus")
    try:
        return gpus.is_dir() and any(gpus.iterdir())
    except OSError:
        return False


def flavor_choices() -> list[tuple[str, str]]:
    choices = [(TrainingRun.Flavor.CPU.value, "CPU")]
    if gpu_available():
        choices.append((TrainingRun.Flavor.GPU.value, "GPU"))
    return choices


def propose_training_version(project: Project) -> str:
    """The next training version name: one above the highest V-number taken."""
    taken = project.training_runs.values_list("version", flat=True)
    numbers = [int(m.group(1)) for v in taken if (m := VERSION_PATTERN.fullmatch(v))]
    return f"V{max(numbers, default=0) + 1:03d}"


def incremental_sources(project: Project):
    """The project's usable training versions, highest precision first."""
    return (
        project.training_runs.filter(status__in=TrainingRun.USABLE_STATUSES)
        .exclude(model_file="")
        .select_related("dataset_version")
        .order_by(F("precision").desc(nulls_last=True), "-created_at")
    )


def clean_max_minutes(value) -> int:
    message = (
        f"The maximum training time must be a whole number of minutes from "
        f"{MIN_TRAINING_MINUTES} to {MAX_TRAINING_MINUTES}"
    )
    if isinstance(value, bool):
        raise ValidationError({"max_minutes": f"{message}."})
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValidationError({"max_minutes": f"{message}, not “{value}”."})
    if not math.isfinite(number) or number != int(number):
        raise ValidationError({"max_minutes": f"{message}, not {value}."})
    if not MIN_TRAINING_MINUTES <= number <= MAX_TRAINING_MINUTES:
        raise ValidationError({"max_minutes": f"{message}, not {value}."})
    return int(number)


def _clean_choice(field: str, value, choices, what: str) -> str:
    allowed = [key for key, _ in choices]
    if value not in allowed:
        raise ValidationError(
            {field: f"Unknown {what} “{value}”: choose one of {', '.join(allowed)}."}
        )
    return value


def _check_dataset_version(project: Project, version: DatasetVersion) -> None:
    if version.project_id != project.pk:
        raise ValidationError(
            {"dataset_version": "That dataset version belongs to another project."}
        )
    trained_labels = set(
        version.items.filter(usage=DatasetVersionItem.Usage.TRAIN).values_list(
            "label_name", flat=True
        )
    )
    if len(trained_labels) < 2:
        raise ValidationError(
            {
                "dataset_version": f"Dataset version {version.name} has training "
                "images of fewer than 2 labels (its training ratio may be 0). "
                "Publish a version with a higher training ratio."
            }
        )


def _check_incremental(project: Project, source: TrainingRun) -> None:
    if source.project_id != project.pk:
        raise ValidationError(
            {"incremental_from": "That training version belongs to another project."}
        )
    if not source.is_usable:
        raise ValidationError(
            {
                "incremental_from": f"Training version {source.version} has no "
                "saved model to start from; choose a finished version."
            }
        )


def _check_validation_unseen(
    dataset_version: DatasetVersion, source: TrainingRun
) -> None:
    """Refuse validation images that the source's classifier trained on.

    An incremental run starts from the source's classifier, so such images
    would make the new version's figures look better than they are.
    """
    if source.dataset_version_id == dataset_version.pk:
        return

    source_version = source.dataset_version
    trained_on = source_version.items.filter(
        usage=DatasetVersionItem.Usage.TRAIN
    ).values("sha256")
    overlap = dataset_version.items.filter(
        usage=DatasetVersionItem.Usage.EVAL, sha256__in=trained_on
    ).count()
    if not overlap:
        return

    name, source_name = dataset_version.name, source_version.name
    if overlap == 1:
        found = f"1 validation image of dataset version {name} was a training image"
    else:
        found = (
            f"{overlap} validation images of dataset version {name} were training "
            "images"
        )
    raise ValidationError(
        {
            "incremental_from": f"{found} of {source_name}, which training version "
            f"{source.version} learned from, so the figures of this training would "
            "be too optimistic. Publish a new dataset version (it keeps the split of "
            f"{source_name}) or train without incremental training."
        }
    )


def start_training(
    project: Project,
    *,
    user,
    dataset_version: DatasetVersion | None = None,
    dataset_version_name: str | None = None,
    train_ratio: float = DEFAULT_TRAIN_RATIO,
    preference: str = TrainingRun.Preference.BALANCE,
    max_minutes: int = DEFAULT_TRAINING_MINUTES,
    flavor: str = TrainingRun.Flavor.CPU,
    incremental_from: TrainingRun | None = None,
    queue: bool = True,
) -> TrainingRun:
    """Create a training version and queue it for the worker.

    Raises NotReadyToTrain (a ValidationError) with the readiness reasons when
    the project cannot be trained yet, and ValidationError keyed by parameter
    name for a value out of range. With `queue=False` the run is created but
    not queued (the `train --wait` command runs it in its own process).
    """
    readiness = project.readiness()
    if not readiness.ready:
        raise NotReadyToTrain(readiness.missing)

    preference = _clean_choice(
        "preference", preference, TrainingRun.Preference.choices, "training preference"
    )
    flavor = _clean_choice("flavor", flavor, flavor_choices(), "instance flavor")
    max_minutes = clean_max_minutes(max_minutes)
    if dataset_version is None:
        train_ratio = clean_train_ratio(train_ratio)
    if incremental_from is not None:
        _check_incremental(project, incremental_from)

    with transaction.atomic():
        if dataset_version is None:
            # An incremental run's classifier has seen its source's training
            # images, so they must not become validation images now.
            dataset_version = _publish(
                project,
                dataset_version_name,
                train_ratio,
                user,
                keep_split_of=incremental_from.dataset_version
                if incremental_from
                else None,
            )
        _check_dataset_version(project, dataset_version)
        if incremental_from is not None:
            _check_validation_unseen(dataset_version, incremental_from)
        run = _create_run(
            project,
            created_by=user if user is not None and user.is_authenticated else None,
            dataset_version=dataset_version,
            train_ratio=dataset_version.train_ratio,
            preference=preference,
            max_minutes=max_minutes,
            flavor=flavor,
            incremental_from=incremental_from,
            incremental_from_version=incremental_from.version
            if incremental_from
            else "",
        )
    logger.info(
        "Training version %s of project %s created (dataset version %s, %s)",
        run.version,
        project.pk,
        dataset_version.name,
        preference,
    )

    if queue:
        queue_run(run)
    return run


def _publish(project, name, train_ratio, user, keep_split_of) -> DatasetVersion:
    """Publish from the current labels, naming errors after our parameters."""
    try:
        return publish_dataset_version(
            project,
            name=(name or "").strip() or None,
            train_ratio=train_ratio,
            user=user,
            keep_split_of=keep_split_of,
        )
    except ValidationError as exc:
        if not hasattr(exc, "error_dict"):
            raise ValidationError({"dataset_version_name": exc.messages})
        renamed = {
            {"name": "dataset_version_name"}.get(key, key): errors
            for key, errors in exc.error_dict.items()
        }
        raise ValidationError(renamed)


def _create_run(project, **fields) -> TrainingRun:
    """Insert the run under the next free version name; retry if raced."""
    for attempt in range(5):
        version = propose_training_version(project)
        try:
            with transaction.atomic():
                return TrainingRun.objects.create(
                    project=project, version=version, **fields
                )
        except IntegrityError:
            logger.info(
                "Training version %s was taken meanwhile (%s)", version, attempt
            )
    raise ValidationError("Could not name the training version; try again.")


def queue_run(run: TrainingRun) -> str:
    """Hand the run to the django-q worker and remember the task id."""
    from django_q.tasks import async_task

    task_id = async_task(
        TASK_NAME,
        run.pk,
        task_name=f"Training {run.version} of project {run.project_id}",
        group="training",
    )
    TrainingRun.objects.filter(pk=run.pk).update(task_id=task_id or "")
    run.task_id = task_id or ""
    return run.task_id


def cancel_training(run: TrainingRun) -> TrainingRun:
    """Cancel a run: at once if it is still queued, else at its next check."""
    now = timezone.now()
    cancelled_now = TrainingRun.objects.filter(
        pk=run.pk, status=TrainingRun.Status.QUEUED
    ).update(
        status=TrainingRun.Status.CANCELLED,
        cancel_requested=True,
        status_message="Cancelled before it started.",
        phase="",
        finished_at=now,
    )
    if not cancelled_now:
        TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.RUNNING).update(
            cancel_requested=True
        )
    run.refresh_from_db()
    logger.info("Cancel requested for training version %s (%s)", run.version, run.pk)
    return run


def deletion_refusal(run: TrainingRun) -> str | None:
    """Why the training version cannot be deleted now, or None if it can."""
    if run.is_active:
        doing = "queued" if run.status == TrainingRun.Status.QUEUED else "training"
        return (
            f"Training version {run.version} is still {doing}; cancel it first, "
            "then delete it."
        )

    # An incremental run reads its source's model file when it starts.
    followers = sorted(
        TrainingRun.objects.filter(
            incremental_from=run, status__in=TrainingRun.ACTIVE_STATUSES
        ).values_list("version", flat=True)
    )
    if followers:
        verb = "trains" if len(followers) == 1 else "train"
        return (
            f"Training version {run.version} cannot be deleted while "
            f"{', '.join(followers)} {verb} incrementally from it; wait for that "
            "training to end or cancel it."
        )
    return None


def delete_training_run(run: TrainingRun) -> None:
    """Delete a training version that has ended, with its service and model.

    Raises ValidationError with deletion_refusal()'s reason. Versions trained
    incrementally from it keep their own model and remember its name.
    """
    with transaction.atomic():
        # Locked, so the worker cannot claim the run while it is checked.
        current = TrainingRun.objects.select_for_update().filter(pk=run.pk).first()
        if current is None:
            return
        reason = deletion_refusal(current)
        if reason:
            raise ValidationError(reason)

        service = Service.objects.filter(training_run=current).first()
        if service is not None:
            # Frees the model this process holds for the service.
            deployment.stop(service)
            deployment.delete(service)
        current.delete()
        if current.model_file:
            model_file = current.model_file
            transaction.on_commit(lambda: storage.delete_files([model_file]))
    logger.info(
        "Deleted training version %s of project %s", run.version, run.project_id
    )


def mark_stale_runs_failed(queryset=None) -> int:
    """Mark runs whose worker died as failed; returns how many.

    A running run that has not written its heartbeat for longer than
    TRAINING_HEARTBEAT_TIMEOUT lost its worker (killed, out of memory, machine
    restarted). A queued run whose django-q task is recorded as failed will
    never start.
    """
    runs = TrainingRun.objects.all() if queryset is None else queryset
    now = timezone.now()
    cutoff = now - timedelta(seconds=settings.TRAINING_HEARTBEAT_TIMEOUT)

    silent = runs.filter(status=TrainingRun.Status.RUNNING).filter(
        Q(heartbeat_at__lt=cutoff)
        | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)
        | Q(heartbeat_at__isnull=True, started_at__isnull=True)
    )
    count = _fail(silent, worker_died_message(), now)

    queued = runs.filter(status=TrainingRun.Status.QUEUED).exclude(task_id="")
    task_ids = list(queued.values_list("task_id", flat=True)[:500])
    if task_ids:
        from django_q.models import Task

        failed = list(
            Task.objects.filter(id__in=task_ids, success=False).values_list(
                "id", flat=True
            )
        )
        if failed:
            count += _fail(queued.filter(task_id__in=failed), TASK_FAILED_MESSAGE, now)
    return count


def _fail(runs, message: str, now) -> int:
    ids = list(runs.values_list("pk", flat=True))
    if not ids:
        return 0
    count = TrainingRun.objects.filter(
        pk__in=ids, status__in=TrainingRun.ACTIVE_STATUSES
    ).update(
        status=TrainingRun.Status.FAILED,
        status_message=message,
        phase="",
        finished_at=now,
    )
    for pk in ids:
        logger.warning("Training run %s marked failed: %s", pk, message)
    return count


def describe_seconds(seconds: float | None) -> str:
    """ "1 h 02 min", "3 min 05 s", "42 s"; "" for None."""
    if seconds is None:
        return ""
    seconds = max(int(round(seconds)), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def remaining_seconds(run: TrainingRun) -> float | None:
    """A running run's expected time left, never beyond its time limit."""
    elapsed = run.duration_seconds
    if run.status != TrainingRun.Status.RUNNING or elapsed is None:
        return None
    limit_left = max(run.max_minutes * 60 - elapsed, 0.0)
    if run.progress < 0.03:
        return None
    estimate = elapsed * (1.0 - run.progress) / run.progress
    return min(estimate, limit_left)


def waiting_too_long(run: TrainingRun) -> bool:
    """A queued run that no worker has picked up for a while."""
    if run.status != TrainingRun.Status.QUEUED:
        return False
    return timezone.now() - run.created_at > timedelta(seconds=30)
