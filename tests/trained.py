"""A training version trained on real photos, shared by a test class.

Training takes seconds, so a class trains once in setUpTestData and each test
gets a copy of the class's media folder (the model file and the photos).
"""

import shutil
import tempfile
from unittest import mock

from django.conf import settings
from django.test import override_settings
from django_q.conf import Conf

from projects import storage
from tests.base import BaseTestCase, real_photos
from training import serving
from training.models import DatasetVersion, TrainingRun

TRAINING_PHOTOS = 30


def make_run(project, *, version="V001", status=TrainingRun.Status.SUCCEEDED, **kw):
    """A training version row, without training; its model file does not exist."""
    dataset, _ = DatasetVersion.objects.get_or_create(
        project=project,
        name="V001",
        defaults={"train_ratio": 0.8, "seed": 1, "label_names": ["ants", "bees"]},
    )
    run = TrainingRun.objects.create(
        project=project,
        version=version,
        dataset_version=dataset,
        status=status,
        label_names=["ants", "bees"],
        **kw,
    )
    if "model_file" not in kw:
        run.model_file = storage.model_name_for(project.pk, run.pk)
        run.save(update_fields=["model_file"])
    return run


class TrainedModelTestCase(BaseTestCase):
    """Alice's project: 30 ants, 30 bees and a trained version, self.training_run."""

    @classmethod
    def setUpClass(cls):
        cls.class_media = tempfile.mkdtemp(prefix="exeml-trained-")
        media = override_settings(MEDIA_ROOT=cls.class_media)
        # Training is queued with django-q; run it in-process, as tests do.
        sync = mock.patch.object(Conf, "SYNC", True)
        media.enable()
        sync.start()
        try:
            super().setUpClass()
        finally:
            sync.stop()
            media.disable()

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        shutil.rmtree(cls.class_media, ignore_errors=True)

    @classmethod
    def setUpTestData(cls):
        super().setUpTestData()

        from projects.importing import import_file
        from training.datasets import publish_dataset_version
        from training.runs import start_training

        for label in ("ants", "bees"):
            for path in real_photos(label, TRAINING_PHOTOS):
                result = import_file(
                    cls.project, path.name, path.read_bytes(), label_name=label
                )
                assert result.status == "accepted", result.message

        # A fixed split, so every run of the tests trains the same model.
        dataset = publish_dataset_version(cls.project, user=cls.alice, seed=1)
        run = start_training(
            cls.project,
            user=cls.alice,
            dataset_version=dataset,
            preference="performance_first",
        )
        run.refresh_from_db()
        assert run.is_usable, f"{run.status}: {run.status_message}"
        cls.training_run = run

    def setUp(self):
        super().setUp()
        shutil.copytree(self.class_media, settings.MEDIA_ROOT, dirs_exist_ok=True)

    def tearDown(self):
        serving.evict_all_but([])
        super().tearDown()
