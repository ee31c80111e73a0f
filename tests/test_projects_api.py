import io
import json
import zipfile

from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from django.urls import include, path, reverse
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema
from PIL import Image as PILImage
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from projects import storage
from projects.importing import import_file
from projects.models import Image, Label, Project
from tests.base import BaseTestCase, real_photos
from tests.trained import TrainedModelTestCase
from training import deployment, serving
from training.datasets import publish_dataset_version
from training.models import DatasetVersion, Prediction, Service, TrainingRun


def png(color) -> bytes:
    out = io.BytesIO()
    PILImage.new("RGB", (8, 8), color).save(out, "PNG")
    return out.getvalue()


class ApiTestCase(BaseTestCase):
    def setUp(self):
        super().setUp()
        self.api = APIClient()
        self.api.force_authenticate(self.alice)


class ProjectApiTests(ApiTestCase):
    def test_it_lists_only_my_projects_with_counts(self):
        Project.objects.create(owner=self.bob, name="Secret")
        ants = Label.objects.create(project=self.project, name="ants")
        import_file(self.project, "a.png", png((1, 0, 0)), label_name=ants.name)
        import_file(self.project, "b.png", png((2, 0, 0)))

        response = self.api.get("/api/projects/")

        self.assertEqual(response.status_code, 200)
        [project] = response.json()["results"]
        self.assertEqual(project["name"], "Insects")
        self.assertEqual((project["image_count"], project["label_count"]), (2, 1))
        self.assertEqual(project["task_type"], "image_classification")

    def test_it_creates_a_project_for_me(self):
        response = self.api.post(
            "/api/projects/", {"name": " Flowers ", "description": "tulips"}
        )
        self.assertEqual(response.status_code, 201)
        self.assertEqual(response.json()["name"], "Flowers")
        self.assertEqual(response.json()["image_count"], 0)
        self.assertEqual(Project.objects.get(name="Flowers").owner, self.alice)

    def test_it_refuses_a_duplicate_name_ignoring_case(self):
        response = self.api.post("/api/projects/", {"name": "INSECTS"})
        self.assertEqual(response.status_code, 400)
        self.assertEqual(
            response.json(), {"name": ["You already have a project with this name."]}
        )

    def test_it_refuses_a_duplicate_non_ascii_name_ignoring_case(self):
        Project.objects.create(owner=self.alice, name="Été")
        response = self.api.post("/api/projects/", {"name": "ÉTÉ"})
        self.assertEqual(response.status_code, 400)
        self.assertEqual(
            response.json(), {"name": ["You already have a project with this name."]}
        )
        self.assertEqual(Project.objects.filter(owner=self.alice).count(), 2)

    def test_it_renames_a_project(self):
        url = f"/api/projects/{self.project.pk}/"
        response = self.api.patch(url, {"name": "Bugs"}, format="json")
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.json()["name"], "Bugs")
        self.project.refresh_from_db()
        self.assertEqual(self.project.name, "Bugs")

    def test_it_deletes_a_project_with_its_files(self):
        import_file(self.project, "a.png", png((1, 0, 0)))
        folder = storage.project_dir(self.project.pk)
        with self.captureOnCommitCallbacks(execute=True):
            response = self.api.delete(f"/api/projects/{self.project.pk}/")
        self.assertEqual(response.status_code, 204)
        self.assertFalse(Project.objects.filter(pk=self.project.pk).exists())
        self.assertFalse(folder.exists())

    def test_it_explains_a_request_body_over_the_size_limit(self):
        body = json.dumps({"name": "Big", "description": "a" * 3_000_000})
        response = self.api.post(
            "/api/projects/", body, content_type="application/json"
        )

        self.assertEqual(response.status_code, 400)
        self.assertEqual(
            response.json(),
            {
                "detail": "The request body is over 2.5 MB, the most taken apart "
                "from uploaded files (DATA_UPLOAD_MAX_MEMORY_SIZE); send less at "
                "once, and send images as file uploads."
            },
        )
        self.assertEqual(Project.objects.count(), 1)

    def test_it_needs_authentication(self):
        response = APIClient().get("/api/projects/")
        self.assertIn(response.status_code, (401, 403))


class ImageApiTests(ApiTestCase):
    def setUp(self):
        super().setUp()
        self.base = f"/api/projects/{self.project.pk}/images/"
        self.ant = self.add("ant_1.png", (1, 0, 0), "ants")
        self.bee = self.add("bee_1.png", (2, 0, 0), "bees")
        self.new = self.add("new_1.png", (3, 0, 0))

    def add(self, name, color, label=None) -> Image:
        result = import_file(self.project, name, png(color), label_name=label)
        return Image.objects.get(pk=result.image_id)

    def names(self, params=None) -> list[str]:
        response = self.api.get(self.base, params or {})
        self.assertEqual(response.status_code, 200, response.content)
        return sorted(r["original_name"] for r in response.json()["results"])

    def test_it_lists_images_with_their_labels_and_urls(self):
        response = self.api.get(self.base)
        body = response.json()
        self.assertEqual(body["count"], 3)
        ant = next(r for r in body["results"] if r["id"] == self.ant.pk)
        self.assertEqual(ant["label_name"], "ants")
        self.assertEqual(ant["format"], "PNG")
        self.assertEqual((ant["width"], ant["height"]), (8, 8))
        self.assertEqual(
            ant["file_url"],
            f"http://testserver/api/projects/{self.project.pk}/images/{self.ant.pk}/file/",
        )

    def test_it_filters_images(self):
        self.assertEqual(self.names({"status": "labeled"}), ["ant_1.png", "bee_1.png"])
        self.assertEqual(self.names({"status": "unlabeled"}), ["new_1.png"])
        self.assertEqual(self.names({"label": "BEES"}), ["bee_1.png"])
        self.assertEqual(self.names({"label": self.ant.label_id}), ["ant_1.png"])
        self.assertEqual(self.names({"label": "wasps"}), [])
        self.assertEqual(self.names({"search": "NEW"}), ["new_1.png"])

    def test_it_refuses_a_label_id_no_label_can_have(self):
        for value in ["9223372036854775808", "0", "1" * 5000]:
            with self.subTest(value=value[:30]):
                response = self.api.get(self.base, {"label": value})
                self.assertEqual(response.status_code, 400)
                shown = value if len(value) <= 24 else value[:24] + "…"
                self.assertEqual(
                    response.json(),
                    {
                        "label": [
                            f"Not a valid label id: “{shown}”. An id is a whole "
                            "number from 1 to 9223372036854775807."
                        ]
                    },
                )

    def test_it_takes_unicode_digits_as_a_label_name(self):
        self.assertEqual(self.names({"label": "²"}), [])
        squared = Label.objects.create(project=self.project, name="²")
        Image.objects.filter(pk=self.new.pk).update(label=squared)
        self.assertEqual(self.names({"label": "²"}), ["new_1.png"])

    @override_settings(UPLOAD_MAX_FILES=2, DATA_UPLOAD_MAX_NUMBER_FILES=2)
    def test_it_explains_too_many_files_in_one_upload(self):
        photos = real_photos("ants", 3)
        token = Token.objects.create(user=self.alice)
        by_token = APIClient()
        by_token.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        by_session = APIClient(enforce_csrf_checks=True)
        by_session.force_login(self.alice)
        by_session.get(f"/projects/{self.project.pk}/images/upload/")
        csrf = by_session.cookies["csrftoken"].value

        for client, headers in [(by_token, {}), (by_session, {"X-CSRFToken": csrf})]:
            files = [SimpleUploadedFile(p.name, p.read_bytes()) for p in photos]
            response = client.post(
                f"{self.base}upload/",
                {"files": files},
                format="multipart",
                headers=headers,
            )
            self.assertEqual(response.status_code, 400)
            self.assertEqual(
                response.json(),
                {
                    "detail": "Send at most 2 files in one request (UPLOAD_MAX_FILES);"
                    " split the upload into smaller batches."
                },
            )
        self.assertEqual(self.project.images.count(), 3)

    def test_it_refuses_an_unknown_status(self):
        response = self.api.get(self.base, {"status": "maybe"})
        self.assertEqual(response.status_code, 400)
        self.assertEqual(response.json(), {"status": "Use labeled or unlabeled."})

    def test_it_retrieves_an_image_and_its_files(self):
        url = f"{self.base}{self.ant.pk}/"
        self.assertEqual(self.api.get(url).json()["sha256"], self.ant.sha256)

        original = self.api.get(f"{url}file/")
        self.assertEqual(original["Content-Type"], "image/png")
        self.assertEqual(b"".join(original.streaming_content), png((1, 0, 0)))
        thumbnail = self.api.get(f"{url}thumbnail/")
        self.assertEqual(thumbnail["Content-Type"], "image/jpeg")

    def test_it_deletes_an_image_with_its_files(self):
        with self.captureOnCommitCallbacks(execute=True):
            response = self.api.delete(f"{self.base}{self.ant.pk}/")
        self.assertEqual(response.status_code, 204)
        self.assertFalse(Image.objects.filter(pk=self.ant.pk).exists())
        self.assertFalse(storage.media_path(self.ant.file).exists())

    def test_it_uploads_files_with_a_label(self):
        photos = real_photos("ants", 2)
        files = [SimpleUploadedFile(p.name, p.read_bytes()) for p in photos]
        files.append(SimpleUploadedFile("notes.txt", b"hello"))
        response = self.api.post(
            f"{self.base}upload/", {"files": files, "label": "ants"}, format="multipart"
        )

        self.assertEqual(response.status_code, 200)
        report = response.json()
        self.assertEqual(
            (report["accepted"], report["duplicates"], report["rejected"]), (2, 0, 1)
        )
        self.assertEqual(report["results"][0]["label"], "ants")
        self.assertEqual(
            report["results"][2]["message"], "This is not an image: it is a text file."
        )
        self.assertEqual(self.project.images.filter(label__name="ants").count(), 3)

    def test_it_filters_by_a_non_ascii_label_name_in_any_case(self):
        self.add("ete_1.png", (4, 0, 0), "Été")
        self.assertEqual(self.names({"label": "ÉTÉ"}), ["ete_1.png"])

    def test_it_refuses_an_upload_label_that_breaks_the_label_rule(self):
        photo = real_photos("ants", 1)[0]
        for label in ["../../bees", "x" * 33]:
            with self.subTest(label=label):
                upload = SimpleUploadedFile(photo.name, photo.read_bytes())
                response = self.api.post(
                    f"{self.base}upload/",
                    {"files": [upload], "label": label},
                    format="multipart",
                )
                self.assertEqual(response.status_code, 400)
                self.assertIn("A label name", response.json()["label"][0])
        self.assertEqual(self.project.images.count(), 3)
        self.assertEqual(self.project.labels.count(), 2)

    def test_it_refuses_an_upload_without_files(self):
        response = self.api.post(f"{self.base}upload/", {}, format="multipart")
        self.assertEqual(response.status_code, 400)
        self.assertIn("files", response.json())

    def test_it_uploads_a_zip(self):
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as zf:
            zf.write(real_photos("bees", 1)[0], "train/bees/b.jpg")
            zf.writestr("train/bees/b2.png", png((2, 0, 0)))
        response = self.api.post(
            f"{self.base}upload-zip/",
            {
                "archive": SimpleUploadedFile("set.zip", archive.getvalue()),
                "labels_from_folders": "true",
            },
            format="multipart",
        )

        report = response.json()
        self.assertEqual((report["accepted"], report["duplicates"]), (1, 1))
        self.assertEqual(report["results"][0]["label"], "bees")
        self.assertEqual(report["results"][1]["duplicate_of_id"], self.bee.pk)


class ApiAccessTests(ApiTestCase):
    def test_it_answers_404_to_another_user_on_every_endpoint(self):
        image = Image.objects.get(
            pk=import_file(self.project, "a.png", png((1, 0, 0))).image_id
        )
        bob = APIClient()
        bob.force_authenticate(self.bob)
        project = f"/api/projects/{self.project.pk}/"
        images = f"{project}images/"
        one = f"{images}{image.pk}/"
        upload = SimpleUploadedFile("b.png", png((9, 9, 9)))

        answers = {
            "project get": bob.get(project),
            "project patch": bob.patch(project, {"name": "Mine"}, format="json"),
            "project put": bob.put(project, {"name": "Mine"}, format="json"),
            "project delete": bob.delete(project),
            "images": bob.get(images),
            "image": bob.get(one),
            "image delete": bob.delete(one),
            "file": bob.get(f"{one}file/"),
            "thumbnail": bob.get(f"{one}thumbnail/"),
            "upload": bob.post(f"{images}upload/", {"files": [upload]}),
            "upload zip": bob.post(
                f"{images}upload-zip/",
                {"archive": SimpleUploadedFile("x.zip", b"PK")},
            ),
        }
        for name, response in answers.items():
            self.assertEqual(response.status_code, 404, name)

        self.project.refresh_from_db()
        self.assertEqual(self.project.name, "Insects")
        self.assertEqual(self.project.images.count(), 1)
        self.assertEqual(bob.get("/api/projects/").json()["count"], 0)

    def test_it_gives_a_token_that_authenticates(self):
        # Hashed with this test's password hasher.
        self.alice.set_password("s3cret-horse!")
        self.alice.save()
        response = APIClient().post(
            "/api/auth/token/", {"username": "alice", "password": "s3cret-horse!"}
        )
        self.assertEqual(response.status_code, 200)
        token = response.json()["token"]

        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        listed = client.get("/api/projects/")
        self.assertEqual(listed.status_code, 200)
        self.assertEqual(listed.json()["results"][0]["name"], "Insects")

    def test_it_refuses_a_token_for_a_wrong_password(self):
        response = APIClient().post(
            "/api/auth/token/", {"username": "alice", "password": "wrong"}
        )
        self.assertEqual(response.status_code, 400)

    def test_it_works_with_the_session_of_the_pages(self):
        self.assertEqual(self.client.get("/api/projects/").status_code, 200)
        self.assertEqual(reverse("api-image-list", args=[1]), "/api/projects/1/images/")


class ApiSchemaTests(BaseTestCase):
    def test_it_documents_the_api_without_warnings(self):
        GENERATOR_STATS.reset()
        generator = SchemaGenerator(
            patterns=[path("api/", include("projects.api_urls"))]
        )
        schema = generator.get_schema(request=None, public=True)

        validate_schema(schema)
        self.assertEqual(dict(GENERATOR_STATS._warn_cache), {})
        self.assertEqual(dict(GENERATOR_STATS._error_cache), {})
        self.assertIn("/api/projects/{project_id}/images/upload/", schema["paths"])
        upload = schema["paths"]["/api/projects/{project_id}/images/upload/"]["post"]
        self.assertIn("multipart/form-data", upload["requestBody"]["content"])
        self.assertIn("/api/auth/token/", schema["paths"])


class TrainedProjectApiTests(TrainedModelTestCase):
    def test_it_deletes_a_project_with_trained_versions_and_a_service(self):
        service = deployment.deploy(self.training_run)
        deployment.record_prediction(service, "bees", 0.8, 10.0)
        publish_dataset_version(self.project, name="spring", seed=2)
        model = storage.media_path(self.training_run.model_file)
        self.assertEqual(serving.loaded_service_ids(), [service.pk])
        api = APIClient()
        api.force_authenticate(self.alice)

        with self.captureOnCommitCallbacks(execute=True):
            response = api.delete(f"/api/projects/{self.project.pk}/")

        self.assertEqual(response.status_code, 204)
        self.assertFalse(Project.objects.exists())
        for model_class in (TrainingRun, Service, Prediction, DatasetVersion):
            self.assertFalse(model_class.objects.exists(), model_class.__name__)
        self.assertEqual(serving.loaded_service_ids(), [])
        self.assertFalse(model.exists())
        self.assertFalse(storage.project_dir(self.project.pk).exists())
