"""Where a project's files live under MEDIA_ROOT, and how they are removed.

Originals are named by the SHA-256 of their bytes, so one project never stores
the same photo twice, and a dataset version can keep using a file after the
image that brought it in is deleted.
"""

from __future__ import annotations

import logging
from pathlib import Path

from django.conf import settings

logger = logging.getLogger(__name__)


def media_path(relative: str) -> Path:
    """The absolute path of a file stored under MEDIA_ROOT."""
    root = Path(settings.MEDIA_ROOT).resolve()
    path = (root / relative).resolve()
    if root not in path.parents:
        raise ValueError(f"{relative!r} is outside MEDIA_ROOT")
    return path


def original_name_for(project_id: int, sha256: str, extension: str) -> str:
    return f"projects/{project_id}/images/{sha256[:2]}/{sha256}.{extension}"


def thumbnail_name_for(project_id: int, sha256: str) -> str:
    return f"projects/{project_id}/thumbs/{sha256[:2]}/{sha256}.jpg"


def model_name_for(project_id: int, run_id: int) -> str:
    return f"projects/{project_id}/models/run-{run_id}.pt"


def project_dir(project_id: int) -> Path:
    return media_path(f"projects/{project_id}")


def write_file(relative: str, data: bytes) -> Path:
    """Write atomically: a reader never sees half a file."""
    path = media_path(relative)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    partial.replace(path)
    return path


def delete_files(relatives: list[str]) -> None:
    """Remove stored files that no dataset version still needs."""
    from training.models import DatasetVersionItem

    wanted = set(relatives)
    kept = set(
        DatasetVersionItem.objects.filter(file__in=wanted).values_list(
            "file", flat=True
        )
    )
    kept |= set(
        DatasetVersionItem.objects.filter(thumbnail__in=wanted).values_list(
            "thumbnail", flat=True
        )
    )
    for relative in wanted - kept:
        try:
            media_path(relative).unlink(missing_ok=True)
        except OSError:
            logger.exception("Could not delete %s", relative)
