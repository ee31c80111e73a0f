"""Real photos imported into a project, and engine items built from a version.

Shared by the training tests; training on a handful of photos takes about a
second.
"""

from projects.importing import import_file
from tests.base import real_photos
from training.models import DatasetVersionItem


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


def engine_items(dataset_version):
    from training.ml.engine import TrainingItem

    return [
        TrainingItem(
            item_id=item.pk,
            path=item.file,
            name=item.original_name,
            sha256=item.sha256,
            label=item.label_name,
            is_validation=item.usage == DatasetVersionItem.Usage.EVAL,
        )
        for item in dataset_version.items.order_by("id")
    ]
