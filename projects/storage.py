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


# SQLite refuses a query with more than 32,766 parameters; ask in chunks well
# below that, so deleting tens of thousands of images still works.
QUERY_CHUNK = 900


def values_in_use(queryset, field: str, values) -> set[str]:
    """Those of `values` that `field` holds somewhere in `queryset`."""
    values = list(values)
    found = set()
    for start in range(0, len(values), QUERY_CHUNK):
        chunk = values[start : start + QUERY_CHUNK]
        rows = queryset.filter(**{f"{field}__in": chunk}).values_list(field, flat=True)
        found.update(rows)
    return found


def delete_files(relatives: list[str]) -> None:
    """Remove stored files that no dataset version still needs."""
    from training.models import DatasetVersionItem

    wanted = set(relatives)
    items = DatasetVersionItem.objects.all()
    kept = values_in_use(items, "file", wanted)
    kept |= values_in_use(items, "thumbnail", wanted)
    for relative in wanted - kept:
        try:
            media_path(relative).unlink(missing_ok=True)
        except OSError:
            logger.exception("Could not delete %s", relative)
