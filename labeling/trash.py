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

from projects.deletion import delete_images
from projects.models import Project

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
        deleted = delete_images(trashed_images(project))
    logger.info("Emptied the trash of project %s (%s images)", project.pk, deleted)
    return deleted
