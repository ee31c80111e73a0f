"""Images set aside with "keep files for restore", and removing them for good.

A trashed image keeps its row and its files; it only has `trashed_at` set, so
every list and count (which use Image.objects.alive()) leaves it out until it
is restored.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.db import transaction
from django.db.models import QuerySet

from projects import storage
from projects.models import Image, Project

logger = logging.getLogger(__name__)


def trashed_images(project: Project) -> QuerySet:
    return project.images.filter(trashed_at__isnull=False)


def restore_images(project: Project, ids: Iterable[int] | None = None) -> int:
    """Bring trashed images back: all of them, or those with these ids."""
    images = trashed_images(project)
    if ids is not None:
        images = images.filter(pk__in=list(ids))
    restored = images.update(trashed_at=None)
    logger.info("Restored %s images in project %s", restored, project.pk)
    return restored


def empty_trash(project: Project) -> int:
    """Delete the trashed images with their files."""
    with transaction.atomic():
        deleted = delete_images_and_files(trashed_images(project))
    logger.info("Emptied the trash of project %s (%s images)", project.pk, deleted)
    return deleted


def delete_images_and_files(images: QuerySet) -> int:
    """Delete the image rows, then, once that is committed, their files.

    Files are removed only after the commit, so a rolled-back delete never
    leaves rows pointing at missing files; storage.delete_files keeps the files
    a dataset version still uses.
    """
    rows = list(images.values_list("pk", "file", "thumbnail"))
    if not rows:
        return 0

    pks = [pk for pk, _, _ in rows]
    files = [path for _, file, thumb in rows for path in (file, thumb) if path]
    # Delete exactly the rows whose files were collected, even if another
    # request changes which images match the queryset in between.
    for start in range(0, len(pks), 900):
        Image.objects.filter(pk__in=pks[start : start + 900]).delete()
    transaction.on_commit(lambda: storage.delete_files(files))
    return len(pks)
