import io
import zipfile

from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, override_settings
from django.urls import reverse

from projects.models import Image, Label
from tests.base import BaseTestCase, real_photos

JSON = {"HTTP_ACCEPT": "application/json"}


def upload(path, name=None) -> SimpleUploadedFile:
    return SimpleUploadedFile(name or path.name, path.read_bytes())


def zip_of(members: dict) -> SimpleUploadedFile:
    """A zip named set.zip; each member is a path or bytes."""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        for name, content in members.items():
            data = content if isinstance(content, bytes) else content.read_bytes()
            zf.writestr(name, data)
    return SimpleUploadedFile("set.zip", archive.getvalue())


class UploadPageTests(BaseTestCase):
    def setUp(self):
        super().setUp()
        self.url = reverse("projects:upload", args=[self.project.pk])
        self.ants = real_photos("ants", 3)

    def test_it_shows_the_drop_zone_and_both_forms(self):
        Label.objects.create(project=self.project, name="ants")
        response = self.client.get(self.url)
        self.assertContains(response, 'id="dropzone"')
        self.assertContains(response, 'name="files" id="upload-files" multiple')
        self.assertContains(response, 'name="archive"')
        self.assertContains(response, 'name="labels_from_folders"')
        self.assertContains(response, '<option value="ants">')
        self.assertContains(response, "js/upload.js")

    def test_it_imports_a_batch_and_answers_a_report_per_file(self):
        files = [
            upload(self.ants[0]),
            upload(self.ants[1]),
            upload(self.ants[0], "same-again.jpg"),
            SimpleUploadedFile("readme.jpg", b"just text"),
        ]
        response = self.client.post(self.url, {"files": files, "label": "ants"}, **JSON)

        self.assertEqual(response.status_code, 200)
        report = response.json()
        self.assertEqual(
            (report["accepted"], report["duplicates"], report["rejected"]), (2, 1, 1)
        )
        results = {r["name"]: r for r in report["results"]}
        first = Image.objects.get(original_name=self.ants[0].name)
        self.assertEqual(results[self.ants[0].name]["image_id"], first.pk)
        self.assertEqual(results[self.ants[0].name]["label"], "ants")
        self.assertEqual(results["same-again.jpg"]["duplicate_of_id"], first.pk)
        self.assertEqual(
            results["readme.jpg"]["message"], "This is not an image: it is a text file."
        )
        self.assertEqual(first.label.name, "ants")
        self.assertEqual(first.labeled_by, self.alice)

    def test_it_renders_a_report_page_without_javascript(self):
        files = [upload(self.ants[0]), SimpleUploadedFile("empty.png", b"")]
        response = self.client.post(self.url, {"files": files})

        self.assertContains(response, "Upload report")
        self.assertContains(response, "<strong>1</strong> accepted")
        self.assertContains(response, "The file is empty.")
        self.assertEqual(Image.objects.count(), 1)

    def test_it_imports_a_zip_with_folder_labels(self):
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as zf:
            zf.write(self.ants[0], f"train/ants/{self.ants[0].name}")
            zf.write(real_photos("bees", 1)[0], "val/bees/bee.jpg")
        zipped = SimpleUploadedFile("set.zip", archive.getvalue())

        response = self.client.post(
            self.url, {"archive": zipped, "labels_from_folders": "on"}, **JSON
        )

        report = response.json()
        self.assertEqual(report["accepted"], 2)
        self.assertEqual(
            {r["name"]: r["label"] for r in report["results"]},
            {f"train/ants/{self.ants[0].name}": "ants", "val/bees/bee.jpg": "bees"},
        )

    def test_it_reports_a_corrupt_zip(self):
        zipped = SimpleUploadedFile("set.zip", b"PK\x03\x04 not really a zip")
        response = self.client.post(self.url, {"archive": zipped}, **JSON)
        result = response.json()["results"][0]
        self.assertEqual((result["name"], result["status"]), ("set.zip", "rejected"))
        self.assertIn("not a readable zip archive", result["message"])

    def test_it_says_a_zip_of_hidden_files_holds_nothing_to_import(self):
        archive = zip_of({".trip/ants/1.jpg": self.ants[0], "__MACOSX/._1.jpg": b"x"})
        response = self.client.post(self.url, {"archive": archive}, **JSON)

        report = response.json()
        self.assertEqual((report["accepted"], report["rejected"]), (0, 1))
        self.assertEqual(report["ignored"], 2)
        self.assertEqual(
            report["notes"],
            ["2 files were skipped: hidden or system files (e.g. .trip/ants/1.jpg)."],
        )
        self.assertEqual(
            [(r["name"], r["status"], r["message"]) for r in report["results"]],
            [
                (
                    "set.zip",
                    "rejected",
                    "The zip holds no files to import: 2 files were skipped as "
                    "hidden or system files (e.g. .trip/ants/1.jpg).",
                )
            ],
        )
        self.assertFalse(Image.objects.exists())

    def test_it_says_an_empty_zip_holds_nothing_to_import(self):
        response = self.client.post(self.url, {"archive": zip_of({})}, **JSON)
        report = response.json()
        self.assertEqual(report["notes"], [])
        self.assertEqual(
            [(r["status"], r["message"]) for r in report["results"]],
            [("rejected", "The zip holds no files to import.")],
        )

    def test_it_notes_skipped_files_on_the_report_page(self):
        archive = zip_of({"ants/a.jpg": self.ants[0], "__MACOSX/ants/._a.jpg": b"x"})
        response = self.client.post(self.url, {"archive": archive})

        self.assertContains(response, "<strong>1</strong> accepted")
        self.assertContains(
            response,
            "1 file was skipped: hidden or system files (e.g. __MACOSX/ants/._a.jpg).",
        )
        self.assertEqual(Image.objects.count(), 1)

    def test_it_asks_for_files_when_none_are_sent(self):
        response = self.client.post(self.url, {}, **JSON)
        self.assertEqual(response.status_code, 400)
        self.assertEqual(
            response.json(), {"error": "Choose images or a zip archive to upload."}
        )

    def test_it_refuses_a_label_longer_than_32_characters(self):
        response = self.client.post(
            self.url, {"files": [upload(self.ants[0])], "label": "x" * 33}, **JSON
        )
        self.assertEqual(response.status_code, 400)
        self.assertIn("at most 32 characters", response.json()["error"])
        self.assertFalse(Image.objects.exists())

    def test_it_refuses_a_label_that_breaks_the_label_rule(self):
        response = self.client.post(
            self.url, {"files": [upload(self.ants[0])], "label": "../../bees"}, **JSON
        )
        self.assertEqual(response.status_code, 400)
        self.assertIn(
            "A label name cannot contain “/” (“../../bees”)", response.json()["error"]
        )
        self.assertFalse(Image.objects.exists())
        self.assertFalse(self.project.labels.exists())

    def test_it_cleans_whitespace_inside_the_label_of_an_upload(self):
        response = self.client.post(
            self.url,
            {"files": [upload(self.ants[0])], "label": " big \t ants "},
            **JSON,
        )
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.json()["results"][0]["label"], "big ants")
        self.assertEqual(Image.objects.get().label.name, "big ants")

    @override_settings(UPLOAD_MAX_FILES=2, DATA_UPLOAD_MAX_NUMBER_FILES=2)
    def test_it_refuses_too_many_files_in_one_request_clearly(self):
        files = [upload(photo) for photo in self.ants]
        response = self.client.post(self.url, {"files": files}, **JSON)
        self.assertEqual(response.status_code, 400)
        self.assertEqual(
            response.json()["error"],
            "Send at most 2 files in one request (UPLOAD_MAX_FILES); split the "
            "upload into smaller batches.",
        )
        self.assertFalse(Image.objects.exists())

    @override_settings(UPLOAD_MAX_FILES=2, DATA_UPLOAD_MAX_NUMBER_FILES=2)
    def test_it_explains_too_many_files_when_the_csrf_check_refuses_them(self):
        # A browser's request is read by the CSRF check before the view runs.
        client = Client(enforce_csrf_checks=True)
        client.force_login(self.alice)
        client.get(self.url)
        token = client.cookies["csrftoken"].value
        message = (
            "Send at most 2 files in one request (UPLOAD_MAX_FILES); split the "
            "upload into smaller batches."
        )

        files = [upload(photo) for photo in self.ants]
        data = {"files": files, "csrfmiddlewaretoken": token}
        response = client.post(self.url, data, **JSON)
        self.assertEqual(response.status_code, 400)
        self.assertEqual(response.json(), {"error": message})

        files = [upload(photo) for photo in self.ants]
        data = {"files": files, "csrfmiddlewaretoken": token}
        response = client.post(self.url, data)
        self.assertContains(response, message, status_code=400)
        self.assertContains(response, "Nothing was changed.", status_code=400)
        self.assertFalse(Image.objects.exists())

    def test_it_sends_batches_under_the_request_limits(self):
        response = self.client.get(self.url)
        self.assertContains(response, 'data-batch-files="20"')
        with self.settings(UPLOAD_MAX_FILES=5, DATA_UPLOAD_MAX_NUMBER_FILES=5):
            response = self.client.get(self.url)
        self.assertContains(response, 'data-batch-files="5"')

    @override_settings(IMAGE_MAX_BYTES=5000)
    def test_it_refuses_a_file_over_the_size_limit(self):
        response = self.client.post(self.url, {"files": [upload(self.ants[0])]}, **JSON)
        result = response.json()["results"][0]
        self.assertEqual(result["status"], "rejected")
        self.assertIn("files over 0.0 MB are refused", result["message"])

    def test_it_answers_404_for_another_users_project(self):
        self.client.force_login(self.bob)
        self.assertEqual(self.client.get(self.url).status_code, 404)
        response = self.client.post(self.url, {"files": [upload(self.ants[0])]}, **JSON)
        self.assertEqual(response.status_code, 404)
        self.assertFalse(Image.objects.exists())

    def test_it_sends_anonymous_visitors_to_log_in(self):
        self.client.logout()
        response = self.client.get(self.url)
        self.assertEqual(response.status_code, 302)
        self.assertIn(reverse("login"), response["Location"])
