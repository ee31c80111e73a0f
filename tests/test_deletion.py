import io

from django.urls import reverse
from PIL import Image as PILImage

from projects import storage
from projects.deletion import delete_images, delete_project
from projects.importing import import_file
from projects.models import Image, Project
from tests.base import BaseTestCase
from tests.trained import TrainedModelTestCase, make_run
from training import deployment, serving
from training.datasets import publish_dataset_version
from training.models import (
    DatasetVersion,
    DatasetVersionItem,
    Prediction,
    Service,
    TrainingRun,
)


def png(color) -> bytes:
    out = io.BytesIO()
    PILImage.new("RGB", (8, 8), color).save(out, "PNG")
    return out.getvalue()


class DeletionTests(BaseTestCase):
    def setUp(self):
        super().setUp()
        for n in range(2):
            import_file(self.project, f"{n}.png", png((n, 0, 0)))
        self.folder = storage.project_dir(self.project.pk)

    def test_it_deletes_images_and_their_files(self):
        files = list(Image.objects.values_list("file", "thumbnail"))
        with self.captureOnCommitCallbacks(execute=True):
            count = delete_images(Image.objects.filter(project=self.project))

        self.assertEqual(count, 2)
        self.assertFalse(Image.objects.exists())
        for file, thumb in files:
            self.assertFalse(storage.media_path(file).exists())
            self.assertFalse(storage.media_path(thumb).exists())

    def test_it_deletes_nothing_for_an_empty_selection(self):
        self.assertEqual(delete_images(Image.objects.none()), 0)
        self.assertEqual(Image.objects.count(), 2)

    def test_it_removes_the_project_folder_with_the_project(self):
        self.assertTrue(self.folder.exists())
        with self.captureOnCommitCallbacks(execute=True):
            delete_project(self.project)

        self.assertFalse(Project.objects.filter(pk=self.project.pk).exists())
        self.assertFalse(self.folder.exists())

    def test_it_removes_the_folder_when_the_delete_page_is_confirmed(self):
        url = reverse("projects:delete", args=[self.project.pk])
        with self.captureOnCommitCallbacks(execute=True):
            self.client.post(url)
        self.assertFalse(self.folder.exists())


class TrainedProjectDeletionTests(TrainedModelTestCase):
    """A project with a trained version, its service and two dataset versions."""

    def setUp(self):
        super().setUp()
        self.service = deployment.deploy(self.training_run)
        deployment.record_prediction(self.service, "ants", 0.9, 12.0)
        publish_dataset_version(self.project, name="spring", seed=2)
        make_run(self.project, version="V002", status=TrainingRun.Status.FAILED)
        self.folder = storage.project_dir(self.project.pk)
        self.model = storage.media_path(self.training_run.model_file)

    def assert_all_gone(self):
        self.assertFalse(Project.objects.filter(pk=self.project.pk).exists())
        for model in (TrainingRun, Service, Prediction, DatasetVersion):
            self.assertFalse(model.objects.exists(), model.__name__)
        self.assertFalse(DatasetVersionItem.objects.exists())
        self.assertFalse(Image.objects.exists())
        self.assertEqual(serving.loaded_service_ids(), [])
        self.assertFalse(self.model.exists())
        self.assertFalse(self.folder.exists())

    def test_it_deletes_a_trained_project_from_its_delete_page(self):
        self.assertEqual(serving.loaded_service_ids(), [self.service.pk])
        self.assertTrue(self.model.is_file())
        url = reverse("projects:delete", args=[self.project.pk])

        with self.captureOnCommitCallbacks(execute=True):
            response = self.client.post(url)

        self.assertRedirects(response, reverse("projects:list"))
        self.assert_all_gone()

    def test_another_user_cannot_delete_it(self):
        self.client.force_login(self.bob)
        url = reverse("projects:delete", args=[self.project.pk])

        self.assertEqual(self.client.post(url).status_code, 404)

        self.assertEqual(TrainingRun.objects.count(), 2)
        self.assertEqual(Service.objects.get().status, Service.Status.RUNNING)
        self.assertTrue(self.model.is_file())
