from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

from django.conf import settings
from django.db import models
from django.db.models import Count, Q
from django.urls import reverse

# The smallest data set ExeML lets a user train on: this many labels, each with
# at least this many images.
MIN_LABELS_TO_TRAIN = 2
MIN_IMAGES_PER_LABEL = 5
# A warning, not a block: the largest label has this many times the images of
# the smallest.
IMBALANCE_RATIO = 10


def name_key(name: str) -> str:
    """What project and label names are compared by to be unique: case, runs
    of whitespace and the Unicode form of accents do not count.

    Kept in a column of its own because the database's LOWER() only folds
    ASCII on SQLite. The capital dotted İ folds to a plain i, so "İstanbul"
    and "istanbul" are one name.
    """
    name = unicodedata.normalize("NFC", " ".join(name.split()))
    return unicodedata.normalize("NFC", name.replace("\u0130", "I").casefold())


class _KeepsNameKey:
    """Keeps the `name_key` column in step with `name` on every save."""

    def save(self, *args, **kwargs):
        self.name_key = name_key(self.name)
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "name" in update_fields:
            kwargs["update_fields"] = {*update_fields, "name_key"}
        super().save(*args, **kwargs)


@dataclass
class Readiness:
    """Whether a project can be trained, and if not, what is missing."""

    ready: bool
    missing: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    label_counts: dict[str, int] = field(default_factory=dict)


class Project(_KeepsNameKey, models.Model):
    class TaskType(models.TextChoices):
        IMAGE_CLASSIFICATION = "image_classification", "Image classification"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.CASCADE, related_name="projects"
    )
    name = models.CharField(max_length=100)
    # name_key(name); casefolding can triple a name's length ("ΐ").
    name_key = models.CharField(max_length=300, db_index=True, editable=False)
    description = models.TextField(blank=True)
    task_type = models.CharField(
        max_length=40, choices=TaskType.choices, default=TaskType.IMAGE_CLASSIFICATION
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "name_key"], name="project_name_key_unique_per_owner"
            )
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("projects:detail", args=[self.pk])

    def label_counts(self) -> dict[str, int]:
        """Each label's number of images (trashed images excluded), by name."""
        rows = self.labels.annotate(
            n=Count("images", filter=Q(images__trashed_at__isnull=True))
        ).values_list("name", "n")
        return dict(rows)

    def readiness(self) -> Readiness:
        """The one rule for "can this project be trained?".

        The labeling pages, the API and the training code all ask this method, so
        the rule cannot drift between them.
        """
        counts = self.label_counts()
        enough = {name: n for name, n in counts.items() if n >= MIN_IMAGES_PER_LABEL}
        missing = []
        named_missing = set()

        if len(enough) < MIN_LABELS_TO_TRAIN:
            short = sorted(
                ((name, n) for name, n in counts.items() if n < MIN_IMAGES_PER_LABEL),
                key=lambda item: (-item[1], item[0].lower()),
            )
            labels_needed = MIN_LABELS_TO_TRAIN - len(enough)
            for name, n in short[:labels_needed]:
                named_missing.add(name)
                more = MIN_IMAGES_PER_LABEL - n
                noun = "image" if more == 1 else "images"
                missing.append(f"{name} needs {more} more {noun}")
            absent = labels_needed - len(short[:labels_needed])
            if absent > 0:
                noun = "label" if absent == 1 else "labels"
                missing.append(
                    f"add {absent} more {noun} with at least "
                    f"{MIN_IMAGES_PER_LABEL} images each"
                )

        warnings = []
        # Publishing skips labels without images; say so rather than drop them
        # silently (unless the reasons above already ask for their images).
        for name in sorted(counts, key=str.lower):
            if counts[name] == 0 and name not in named_missing:
                warnings.append(
                    f"{name} has no images and will be left out of training."
                )
        used = [n for n in counts.values() if n > 0]
        if len(used) >= 2 and max(used) > IMBALANCE_RATIO * min(used):
            biggest = max(counts, key=counts.get)
            smallest = min((k for k in counts if counts[k] > 0), key=counts.get)
            warnings.append(
                f"Labels are strongly imbalanced: {biggest} has {counts[biggest]} "
                f"images, {smallest} only {counts[smallest]}. The model may favour "
                f"{biggest}."
            )

        return Readiness(
            ready=not missing, missing=missing, warnings=warnings, label_counts=counts
        )

    def is_ready_to_train(self) -> bool:
        return self.readiness().ready


DEFAULT_LABEL_COLORS = [
    "#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4",
    "#42d4f4", "#f032e6", "#bfef45", "#469990", "#9a6324",
]  # fmt: skip


class Label(_KeepsNameKey, models.Model):
    project = models.ForeignKey(Project, models.CASCADE, related_name="labels")
    name = models.CharField(max_length=32)
    # name_key(name); casefolding can triple a name's length ("ΐ").
    name_key = models.CharField(max_length=96, db_index=True, editable=False)
    color = models.CharField(max_length=7, default="#4363d8")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "name_key"], name="label_name_key_unique_per_project"
            )
        ]

    def __str__(self) -> str:
        return self.name


class ImageQuerySet(models.QuerySet):
    def alive(self) -> ImageQuerySet:
        return self.filter(trashed_at__isnull=True)

    def labeled(self) -> ImageQuerySet:
        return self.filter(label__isnull=False)

    def unlabeled(self) -> ImageQuerySet:
        return self.filter(label__isnull=True)


class Image(models.Model):
    """One photo in a project.

    The original bytes are stored as uploaded, under a name made from their
    SHA-256, so the same file is never stored twice in a project and dataset
    versions can keep pointing at it after the image is deleted.
    """

    project = models.ForeignKey(Project, models.CASCADE, related_name="images")
    label = models.ForeignKey(
        Label, models.SET_NULL, null=True, blank=True, related_name="images"
    )
    file = models.CharField(max_length=300)
    thumbnail = models.CharField(max_length=300)
    original_name = models.CharField(max_length=255)
    sha256 = models.CharField(max_length=64)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    format = models.CharField(max_length=10)
    size_bytes = models.PositiveBigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)
    labeled_at = models.DateTimeField(null=True, blank=True)
    labeled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    # Set when the image was removed with "keep files for restore".
    trashed_at = models.DateTimeField(null=True, blank=True)

    objects = ImageQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "sha256"], name="image_unique_content_per_project"
            )
        ]
        indexes = [
            models.Index(
                fields=["project", "trashed_at", "label"], name="image_gallery_idx"
            ),
            models.Index(fields=["project", "original_name"], name="image_name_idx"),
        ]

    def __str__(self) -> str:
        return self.original_name
