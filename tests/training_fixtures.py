"""Real photos imported into a project, and engine items built from a version.

Shared by the training tests; training on a handful of photos takes about a
second.
"""

from projects.importing import import_file
from tests.base import real_photos


def import_photos(project, label, count, *, split="train", skip=0, as_label=None):
    """Import `count` real photos of `label` ("ants"/"bees"), labeled `as_label`."""
    images = []
    for path in real_photos(label, skip + count, split)[skip:]:
        result = import_file(
            project, path.name, path.read_bytes(), label_name=as_label or label
        )
        assert result.status == "accepted", result.message
        images.append(result.image_id)
    return images
