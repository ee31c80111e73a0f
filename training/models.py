from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.urls import reverse

from projects.models import Image, Project

DEFAULT_TRAIN_RATIO = 0.8
MIN_TRAINING_MINUTES = 6
MAX_TRAINING_MINUTES = 6000
DEFAULT_TRAINING_MINUTES = 60


class DatasetVersion(models.Model):
    """A frozen snapshot of a project's labeled images, split for training."""

    project = models.ForeignKey(
        Project, models.CASCADE, related_name="dataset_versions"
    )
    name = models.CharField(max_length=32)
    train_ratio = models.FloatField(
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)]
    )
    seed = models.BigIntegerField()
    image_count = models.PositiveIntegerField(default=0)
    # Label names as they were at publication, in a stable order.
    label_names = models.JSONField(default=list)
    # {"ants": {"train": 98, "eval": 25}, ...}
    label_counts = models.JSONField(default=dict)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "name"], name="dataset_version_name_unique"
            )
        ]

    def __str__(self) -> str:
        return self.name


class DatasetVersionItem(models.Model):
    class Usage(models.TextChoices):
        TRAIN = "TRAIN", "Training"
        EVAL = "EVAL", "Validation"

    dataset_version = models.ForeignKey(
        DatasetVersion, models.CASCADE, related_name="items"
    )
    # The image may be deleted later; the version keeps its file and label.
    image = models.ForeignKey(
        Image, models.SET_NULL, null=True, blank=True, related_name="version_items"
    )
    file = models.CharField(max_length=300, db_index=True)
    thumbnail = models.CharField(max_length=300)
    original_name = models.CharField(max_length=255)
    sha256 = models.CharField(max_length=64)
    label_name = models.CharField(max_length=32)
    usage = models.CharField(max_length=5, choices=Usage.choices)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.original_name} ({self.label_name}, {self.usage})"


class TrainingRun(models.Model):
    """One click of Train: a training version of the project (V001, V002, ...)."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        STOPPED = "stopped", "Stopped by the time limit"
        CANCELLED = "cancelled", "Cancelled"
        FAILED = "failed", "Failed"

    class Preference(models.TextChoices):
        PERFORMANCE_FIRST = "performance_first", "Performance first"
        BALANCE = "balance", "Balance"
        ACCURACY_FIRST = "accuracy_first", "Accuracy first"

    class Flavor(models.TextChoices):
        CPU = "cpu", "CPU"
        GPU = "gpu", "GPU"

    ACTIVE_STATUSES = (Status.QUEUED, Status.RUNNING)
    # A run stopped by its time limit kept its best model, so it is usable.
    USABLE_STATUSES = (Status.SUCCEEDED, Status.STOPPED)

    project = models.ForeignKey(Project, models.CASCADE, related_name="training_runs")
    version = models.CharField(max_length=8)
    dataset_version = models.ForeignKey(
        DatasetVersion, models.PROTECT, related_name="training_runs"
    )
    train_ratio = models.FloatField(default=DEFAULT_TRAIN_RATIO)
    preference = models.CharField(
        max_length=20, choices=Preference.choices, default=Preference.BALANCE
    )
    flavor = models.CharField(max_length=3, choices=Flavor.choices, default=Flavor.CPU)
    max_minutes = models.PositiveIntegerField(
        default=DEFAULT_TRAINING_MINUTES,
        validators=[
            MinValueValidator(MIN_TRAINING_MINUTES),
            MaxValueValidator(MAX_TRAINING_MINUTES),
        ],
    )
    incremental_from = models.ForeignKey(
        "self", models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # The source's version name, still known once that version is deleted.
    incremental_from_version = models.CharField(max_length=8, blank=True)

    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
    # Words for the user: why the run stopped or failed.
    status_message = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    task_id = models.CharField(max_length=64, blank=True)

    # Live progress, written by the worker.
    phase = models.CharField(max_length=40, blank=True)
    progress = models.FloatField(default=0.0)
    epoch = models.PositiveIntegerField(default=0)
    epochs_total = models.PositiveIntegerField(default=0)
    loss = models.FloatField(null=True, blank=True)
    val_accuracy = models.FloatField(null=True, blank=True)
    log = models.TextField(blank=True)
    # [{"epoch": 1, "loss": 0.41, "val_accuracy": 0.9}, ...]
    history = models.JSONField(default=list)

    # Results.
    label_names = models.JSONField(default=list)
    model_file = models.CharField(max_length=300, blank=True)
    model_size_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    # Macro averages, kept as columns so the dashboard can sort on them.
    accuracy = models.FloatField(null=True, blank=True)
    precision = models.FloatField(null=True, blank=True)
    recall = models.FloatField(null=True, blank=True)
    f1 = models.FloatField(null=True, blank=True)
    # Full evaluation: per-label figures, confusion matrix, mistakes.
    metrics = models.JSONField(default=dict)

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "version"], name="training_version_unique"
            )
        ]

    def __str__(self) -> str:
        return self.version

    def get_absolute_url(self) -> str:
        return reverse("training:run", args=[self.project_id, self.pk])

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE_STATUSES

    @property
    def is_usable(self) -> bool:
        return self.status in self.USABLE_STATUSES and bool(self.model_file)

    @property
    def duration_seconds(self) -> float | None:
        if not self.started_at:
            return None
        from django.utils import timezone

        end = self.finished_at or timezone.now()
        return (end - self.started_at).total_seconds()


class Embedding(models.Model):
    """A backbone's feature vector for one image content, reused across runs."""

    sha256 = models.CharField(max_length=64)
    # The backbone and preprocessing the vector came from, e.g. "lite0-224".
    backbone = models.CharField(max_length=40)
    vector = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["sha256", "backbone"], name="embedding_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.backbone} {self.sha256[:12]}"


class Service(models.Model):
    """A training version deployed as a real-time prediction service."""

    class Status(models.TextChoices):
        DEPLOYING = "deploying", "Deploying"
        RUNNING = "running", "Running"
        STOPPED = "stopped", "Stopped"
        FAILED = "failed", "Failed"

    project = models.ForeignKey(Project, models.CASCADE, related_name="services")
    training_run = models.OneToOneField(
        TrainingRun, models.CASCADE, related_name="service"
    )
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.DEPLOYING
    )
    status_message = models.TextField(blank=True)
    auto_stop_hours = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(24)],
    )
    auto_stop_at = models.DateTimeField(null=True, blank=True)
    prediction_count = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.project} {self.training_run.version}"


class Prediction(models.Model):
    """One answered prediction request, kept for the service's latency figures."""

    service = models.ForeignKey(Service, models.CASCADE, related_name="predictions")
    predicted_label = models.CharField(max_length=32)
    confidence = models.FloatField()
    latency_ms = models.FloatField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["service", "created_at"])]

    def __str__(self) -> str:
        return f"{self.predicted_label} in {self.latency_ms:.1f} ms"
