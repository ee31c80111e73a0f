"""The rules for changing a project's labels and the labels of its images.

The pages and the API both call these functions, so a label is created,
renamed, merged or deleted the same way wherever the request comes from.

Assignments are single UPDATE statements restricted to the project: when two
people label the same project at once, the last assignment wins for each image
and nothing else is overwritten.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Count, Q, QuerySet, TextChoices
from django.utils import timezone

from projects.deletion import delete_images
from projects.ids import parse_ids
from projects.labels import LABEL_NAME_MAX_LENGTH, clean_label_name, next_label_color
from projects.models import Image, Label, Project, name_key

logger = logging.getLogger(__name__)

MAX_LABEL_NAME = LABEL_NAME_MAX_LENGTH
# An API caller may send this many image ids in one request; a larger
# selection is sent as a filter instead.
MAX_SELECTED_IDS = 10_000
# Keep every IN (...) list under the smallest bind-parameter limit we run on
# (SQLite's 999).
_CHUNK = 900
_COLOR_RE = re.compile(r"^#[0-9a-fA-F]{6}$")
# Number keys shown next to the first ten labels, in label order.
SHORTCUT_KEYS = "1234567890"


class DeleteMode(TextChoices):
    LABEL_ONLY = "label_only", "Delete the label only"
    LABEL_AND_IMAGES = "label_and_images", "Delete the label and its images"
    LABEL_IMAGES_AND_FILES = (
        "label_images_and_files",
        "Delete the label, its images and their files",
    )


def unique_label_name(
    project: Project, name: str, *, label: Label | None = None
) -> str:
    """The name, cleaned by the rule every label name follows, if no other
    label of the project has it (ignoring case)."""
    name = clean_label_name(name)

    clash = project.labels.filter(name_key=name_key(name))
    if label is not None:
        clash = clash.exclude(pk=label.pk)
    if clash.exists():
        raise ValidationError(f"This project already has a label named “{name}”.")
    return name


def clean_label_color(color: str) -> str:
    color = (color or "").strip()
    if not _COLOR_RE.match(color):
        raise ValidationError("A colour is written as #rrggbb, for example #3cb44b.")
    return color.lower()


def create_label(project: Project, name: str, color: str | None = None) -> Label:
    name = unique_label_name(project, name)
    color = clean_label_color(color) if color else next_label_color(project)
    try:
        # Two people can add the same name at the same moment: the database
        # constraint decides, and the loser gets the same message as above.
        with transaction.atomic():
            label = Label.objects.create(project=project, name=name, color=color)
    except IntegrityError:
        raise ValidationError(f"This project already has a label named “{name}”.")

    logger.info("Label %s created in project %s", label.name, project.pk)
    return label


def update_label(
    label: Label, *, name: str | None = None, color: str | None = None
) -> Label:
    """Rename and/or recolour. Images keep pointing at the same label row."""
    if name is not None:
        label.name = unique_label_name(label.project, name, label=label)
    if color is not None:
        label.color = clean_label_color(color)
    try:
        with transaction.atomic():
            label.save(update_fields=["name", "color"])
    except IntegrityError:
        raise ValidationError(f"This project already has a label named “{label.name}”.")
    return label


def merge_labels(source: Label, target: Label, *, user=None) -> int:
    """Move every image of `source` to `target`, then delete `source`."""
    if source.project_id != target.project_id:
        raise ValidationError("Labels can only be merged within one project.")
    if source.pk == target.pk:
        raise ValidationError("Choose another label to merge into.")

    with transaction.atomic():
        moved = Image.objects.filter(label=source).update(
            label=target, labeled_at=timezone.now(), labeled_by=user
        )
        source.delete()

    logger.info(
        "Label %s merged into %s in project %s (%s images)",
        source.name,
        target.name,
        target.project_id,
        moved,
    )
    return moved


def images_touched_by_delete(label: Label) -> int:
    """How many images (not in the trash) deleting `label` changes."""
    return label.images.alive().count()


def delete_label(label: Label, mode: str, *, user=None) -> int:
    """Delete a label in one of the three ways; return how many images changed.

    Images already in the trash only lose the label, whatever the mode: they
    were set aside before and stay restorable.
    """
    if mode not in DeleteMode.values:
        raise ValidationError(
            "Choose how to delete the label: " + ", ".join(DeleteMode.values) + "."
        )

    with transaction.atomic():
        images = Image.objects.filter(label=label).alive()
        if mode == DeleteMode.LABEL_ONLY:
            touched = images.update(label=None, labeled_at=None, labeled_by=None)
        elif mode == DeleteMode.LABEL_AND_IMAGES:
            touched = images.update(trashed_at=timezone.now())
        else:
            touched = delete_images(images)
        label.delete()

    logger.info(
        "Label %s deleted from project %s (%s, %s images)",
        label.name,
        label.project_id,
        mode,
        touched,
    )
    return touched


def labels_with_counts(project: Project) -> list[Label]:
    """The project's labels, each with `image_count` (trashed images excluded)
    and its number key `shortcut` ("1".."9", "0", then "")."""
    # Creation order, so adding a label never moves the keys of the others.
    labels = list(
        project.labels.annotate(
            image_count=Count("images", filter=Q(images__trashed_at__isnull=True))
        ).order_by("pk")
    )
    for index, label in enumerate(labels):
        label.shortcut = SHORTCUT_KEYS[index] if index < len(SHORTCUT_KEYS) else ""
    return labels


def _chunks(ids: list[int]) -> Iterator[list[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


def check_image_ids(project: Project, ids: Iterable[int | str]) -> list[int]:
    """The ids, deduplicated, if every one is an image of the project that is
    not in the trash; otherwise a ValidationError naming the others."""
    wanted = list(dict.fromkeys(parse_ids(ids)))
    if len(wanted) > MAX_SELECTED_IDS:
        raise ValidationError(
            f"At most {MAX_SELECTED_IDS} image ids per request; select the images "
            f"with a filter instead."
        )

    alive, trashed = set(), set()
    for chunk in _chunks(wanted):
        rows = Image.objects.filter(project=project, pk__in=chunk)
        for pk, trashed_at in rows.values_list("pk", "trashed_at"):
            (trashed if trashed_at else alive).add(pk)

    foreign = [i for i in wanted if i not in alive and i not in trashed]
    if foreign:
        raise ValidationError(
            "These images are not in this project: " + _id_list(foreign) + "."
        )
    if trashed:
        raise ValidationError(
            "These images are in the trash: "
            + _id_list(sorted(trashed))
            + ". Restore them first."
        )
    return wanted


def _id_list(ids: list[int], limit: int = 20) -> str:
    shown = ", ".join(str(i) for i in ids[:limit])
    if len(ids) > limit:
        shown += f" and {len(ids) - limit} more"
    return shown


def _assignment(label: Label | None, user) -> dict:
    if label is None:
        return {"label": None, "labeled_at": None, "labeled_by": None}
    return {"label": label, "labeled_at": timezone.now(), "labeled_by": user}


def assign_label_to_ids(
    project: Project, ids: Iterable[int], label: Label | None, *, user
) -> int:
    """Give the images with these ids `label` (None removes it).

    The ids must have been through check_image_ids(); the project restriction
    is repeated in the UPDATE so a stray id can never touch another project.
    """
    _check_label(project, label)
    values = _assignment(label, user)
    updated = 0
    with transaction.atomic():
        for chunk in _chunks(list(ids)):
            images = Image.objects.filter(project=project, pk__in=chunk).alive()
            updated += images.update(**values)
    return updated


def assign_label_to_queryset(
    project: Project, images: QuerySet, label: Label | None, *, user
) -> int:
    """Give every image of the queryset (a filter of the project) `label`."""
    _check_label(project, label)
    images = images.filter(project=project).alive()
    return images.update(**_assignment(label, user))


def _check_label(project: Project, label: Label | None) -> None:
    if label is not None and label.project_id != project.pk:
        raise ValidationError("This label belongs to another project.")
