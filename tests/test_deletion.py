import io

from django.urls import reverse
from PIL import Image as PILImage

from projects import storage
from projects.deletion import delete_images, delete_project
from projects.importing import import_file
from projects.models import Image, Project
from tests.base import BaseTestCase


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
