"""Deleting images and projects: the rows first, then the files they leave behind."""

from __future__ import annotations

import logging
import shutil

from django.db import transaction

from projects import storage
from projects.models import Image, Project

logger = logging.getLogger(__name__)

# Rows deleted per query, well under every database's limit on parameters.
_CHUNK = 500


def delete_images(images) -> int:
    """Delete these images and their files; returns how many were deleted.

    Files still used by a dataset version stay on disk (storage.delete_files
    decides), and files are only touched once the rows are gone for good.
    """
    rows = list(images.values_list("pk", "file", "thumbnail"))
    if not rows:
        return 0

    ids = [pk for pk, _, _ in rows]
    files = [rel for _, file, thumb in rows for rel in (file, thumb) if rel]
    # Delete exactly the rows whose files were collected, even if another
    # request changes which images match the queryset in between.
    with transaction.atomic():
        for start in range(0, len(ids), _CHUNK):
            Image.objects.filter(pk__in=ids[start : start + _CHUNK]).delete()
        transaction.on_commit(lambda: storage.delete_files(files))
    return len(rows)


def delete_project(project: Project) -> None:
    """Delete a project with everything in it, its folder on disk included.

    The model files and dataset versions' photos live in that folder too, so
    they go with it once the rows are gone for good.
    """
    project_id = project.pk
    service_ids = list(project.services.values_list("pk", flat=True))
    with transaction.atomic():
        # A training version protects its dataset version, so the training
        # versions (with their services and predictions) go before the project
        # takes its dataset versions along.
        project.training_runs.all().delete()
        project.delete()
        transaction.on_commit(lambda: _free_models(service_ids))
        transaction.on_commit(lambda: _remove_project_dir(project_id))
    logger.info("Deleted project %s", project_id)


def _free_models(service_ids: list[int]) -> None:
    """Drop the deleted services' models from this process's memory."""
    from training import serving

    for service_id in service_ids:
        serving.evict(service_id)


def _remove_project_dir(project_id: int) -> None:
    folder = storage.project_dir(project_id)
    shutil.rmtree(folder, ignore_errors=True)
    if folder.exists():
        logger.error("Could not remove all of %s", folder)
