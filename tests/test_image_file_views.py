import io

from django.urls import reverse
from PIL import Image as PILImage

from projects import storage
from projects.importing import import_file
from projects.models import Image, Project
from tests.base import BaseTestCase, real_photos


class ImageFileViewTests(BaseTestCase):
    def setUp(self):
        super().setUp()
        self.data = real_photos("bees", 1)[0].read_bytes()
        result = import_file(self.project, "bee photo.jpg", self.data)
        self.image = Image.objects.get(pk=result.image_id)
        self.file_url = reverse(
            "projects:image_file", args=[self.project.pk, self.image.pk]
        )
        self.thumb_url = reverse(
            "projects:image_thumb", args=[self.project.pk, self.image.pk]
        )

    def test_it_serves_the_original_to_its_owner(self):
        response = self.client.get(self.file_url)

        self.assertEqual(response.status_code, 200)
        self.assertEqual(b"".join(response.streaming_content), self.data)
        self.assertEqual(response["Content-Type"], "image/jpeg")
        self.assertEqual(response["ETag"], f'"{self.image.sha256}"')
        self.assertEqual(
            response["Cache-Control"], "private, max-age=604800, immutable"
        )
        self.assertEqual(
            response["Content-Disposition"], 'inline; filename="bee photo.jpg"'
        )

    def test_it_serves_the_thumbnail(self):
        response = self.client.get(self.thumb_url)

        self.assertEqual(response["Content-Type"], "image/jpeg")
        thumb = PILImage.open(io.BytesIO(b"".join(response.streaming_content)))
        self.assertEqual(thumb.format, "JPEG")
        self.assertLessEqual(max(thumb.size), 256)

    def test_it_serves_a_png_as_png(self):
        out = io.BytesIO()
        PILImage.new("RGB", (4, 4), "red").save(out, "PNG")
        image_id = import_file(self.project, "red.jpg", out.getvalue()).image_id
        url = reverse("projects:image_file", args=[self.project.pk, image_id])
        self.assertEqual(self.client.get(url)["Content-Type"], "image/png")

    def test_it_answers_304_when_the_browser_has_it(self):
        response = self.client.get(
            self.file_url, HTTP_IF_NONE_MATCH=f'"{self.image.sha256}"'
        )
        self.assertEqual(response.status_code, 304)

    def test_it_answers_404_to_another_user(self):
        self.client.force_login(self.bob)
        self.assertEqual(self.client.get(self.file_url).status_code, 404)
        self.assertEqual(self.client.get(self.thumb_url).status_code, 404)

    def test_it_answers_404_for_an_image_of_another_project(self):
        other = Project.objects.create(owner=self.alice, name="Other")
        url = reverse("projects:image_file", args=[other.pk, self.image.pk])
        self.assertEqual(self.client.get(url).status_code, 404)

    def test_it_answers_404_when_the_file_is_missing(self):
        storage.media_path(self.image.file).unlink()
        self.assertEqual(self.client.get(self.file_url).status_code, 404)

    def test_it_sends_anonymous_visitors_to_log_in(self):
        self.client.logout()
        self.assertEqual(self.client.get(self.thumb_url).status_code, 302)
