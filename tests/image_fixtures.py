"""Images written straight to storage and the database, without the import
pipeline (which has tests of its own): a row, and real files on disk, so tests
can check which files a delete removes and what a dataset version keeps."""

import hashlib
import io
from itertools import count

from django.utils import timezone
from PIL import Image as PILImage

from projects import storage
from projects.models import Image, Label, Project

_serial = count(1)


def jpeg_bytes(n: int, size: int = 24) -> bytes:
    """A small JPEG whose colour, and so whose bytes, depend on `n`."""
    picture = PILImage.new("RGB", (size, size), (n % 256, (n * 7) % 256, n // 256))
    picture.putpixel((0, 0), ((n * 13) % 256, 255, 0))
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=95)
    return out.getvalue()


def make_image(
    project: Project, name: str | None = None, label: Label | None = None, **fields
) -> Image:
    """Store a generated JPEG and its thumbnail the way an import does."""
    n = next(_serial)
    data = jpeg_bytes(n)
    sha256 = hashlib.sha256(data).hexdigest()
    file = storage.original_name_for(project.pk, sha256, "jpg")
    thumbnail = storage.thumbnail_name_for(project.pk, sha256)
    storage.write_file(file, data)
    storage.write_file(thumbnail, data)
    if label is not None:
        fields.setdefault("labeled_at", timezone.now())
    return Image.objects.create(
        project=project,
        label=label,
        file=file,
        thumbnail=thumbnail,
        original_name=name or f"photo_{n:04d}.jpg",
        sha256=sha256,
        width=24,
        height=24,
        format="JPEG",
        size_bytes=len(data),
        **fields,
    )


def make_images(project: Project, n: int, label: Label | None = None, **fields):
    return [make_image(project, label=label, **fields) for _ in range(n)]


def add_image(project, label_name=None, *, name=None, trashed=False) -> Image:
    """make_image() with the label given by name, created when missing."""
    label = None
    if label_name:
        label, _ = Label.objects.get_or_create(project=project, name=label_name)
    trashed_at = timezone.now() if trashed else None
    return make_image(project, name=name, label=label, trashed_at=trashed_at)


def add_images(project, counts: dict[str, int]) -> list[Image]:
    return [add_image(project, label) for label, n in counts.items() for _ in range(n)]
