"""Images for the labeling tests, written straight to storage and the database.

The import pipeline is tested on its own; here an image only needs a row and
real files on disk (so tests can check which files a delete removes).
"""

import hashlib
import io
from itertools import count

from PIL import Image as PILImage

from projects import storage
from projects.models import Image, Label, Project

_serial = count(1)


def make_image(
    project: Project, name: str | None = None, label: Label | None = None, **fields
) -> Image:
    n = next(_serial)
    picture = PILImage.new("RGB", (8, 6), (n % 256, (n // 256) % 256, 90))
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG")
    data = buffer.getvalue()
    sha = hashlib.sha256(data + str(n).encode()).hexdigest()

    file = storage.original_name_for(project.pk, sha, "jpg")
    thumbnail = storage.thumbnail_name_for(project.pk, sha)
    storage.write_file(file, data)
    storage.write_file(thumbnail, data)
    return Image.objects.create(
        project=project,
        label=label,
        file=file,
        thumbnail=thumbnail,
        original_name=name or f"photo_{n:04d}.jpg",
        sha256=sha,
        width=8,
        height=6,
        format="JPEG",
        size_bytes=len(data),
        **fields,
    )


def make_images(project: Project, n: int, label: Label | None = None, **fields):
    return [make_image(project, label=label, **fields) for _ in range(n)]
