import io
import json
import zipfile

from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from projects.models import Label, Project
from tests.base import BaseTestCase
from tests.image_fixtures import add_image, add_images
from training.datasets import publish_dataset_version
from training.manifest import build_manifest, export_modelarts_zip
from training.models import DatasetVersion, TrainingRun


class DatasetVersionApiTests(BaseTestCase):
    def setUp(self):
        super().setUp()
        self.api = APIClient()
        self.api.force_authenticate(self.alice)

    def url(self, name, *extra):
        return reverse(name, args=[self.project.pk, *extra])

    def test_it_publishes_with_a_proposed_name(self):
        add_images(self.project, {"ants": 5, "bees": 5})
        response = self.api.post(
            self.url("api-dataset-versions"), {"train_ratio": 0.6}, format="json"
        )
        self.assertEqual(response.status_code, 201)
        self.assertEqual(response.data["name"], "V001")
        self.assertEqual(response.data["image_count"], 10)
        self.assertEqual(response.data["created_by"], "alice")
        self.assertEqual(
            response.data["label_counts"],
            {"ants": {"train": 3, "eval": 2}, "bees": {"train": 3, "eval": 2}},
        )

    def test_it_names_the_labels_left_out_for_lack_of_images(self):
        add_images(self.project, {"ants": 5, "bees": 5})
        Label.objects.create(project=self.project, name="wasps")

        response = self.api.post(
            self.url("api-dataset-versions"), {"train_ratio": 0.6}, format="json"
        )

        self.assertEqual(response.status_code, 201)
        self.assertEqual(response.data["label_names"], ["ants", "bees"])
        self.assertEqual(response.data["left_out_labels"], ["wasps"])

    def test_it_publishes_with_a_name_and_seed(self):
        add_images(self.project, {"ants": 6})
        data = {"name": "exp-1", "train_ratio": 0.5, "seed": 42}
        response = self.api.post(self.url("api-dataset-versions"), data, format="json")
        self.assertEqual(response.status_code, 201)
        version = DatasetVersion.objects.get(name="exp-1")
        self.assertEqual(version.seed, 42)

    def test_it_answers_400_with_the_reason(self):
        add_images(self.project, {"ants": 2})
        publish_dataset_version(self.project, name="V001")
        cases = [
            ({"name": "V001"}, "name", "already has a dataset version named “V001”"),
            ({"name": "a b"}, "name", "may contain only letters"),
            ({"train_ratio": 1.2}, "train_ratio", "must be a number from 0 to 1"),
            ({"train_ratio": "x"}, "train_ratio", "A valid number is required."),
        ]
        for data, field, message in cases:
            with self.subTest(data=data):
                response = self.api.post(
                    self.url("api-dataset-versions"), data, format="json"
                )
                self.assertEqual(response.status_code, 400)
                self.assertIn(message, str(response.data[field][0]))
        self.assertEqual(DatasetVersion.objects.count(), 1)

    def test_it_refuses_a_boolean_train_ratio(self):
        add_images(self.project, {"ants": 2})
        for value in (True, False):
            with self.subTest(value=value):
                response = self.api.post(
                    self.url("api-dataset-versions"),
                    {"name": "R1", "train_ratio": value},
                    format="json",
                )
                self.assertEqual(response.status_code, 400)
                shown = "true" if value else "false"
                self.assertEqual(
                    response.json(),
                    {
                        "train_ratio": [
                            "The training ratio must be a number from 0 to 1, not "
                            f"{shown}."
                        ]
                    },
                )
        self.assertFalse(DatasetVersion.objects.exists())

    def test_it_answers_409_for_a_class_folder_export_that_would_merge_labels(self):
        add_images(self.project, {"ants": 1, "bees": 1})
        version = publish_dataset_version(self.project, train_ratio=1)
        # A version published before label names had one rule.
        version.items.filter(label_name="ants").update(label_name="../../bees")
        response = self.api.get(
            self.url("api-dataset-version-export-folders", version.pk)
        )
        self.assertEqual(response.status_code, 409)
        self.assertIn(
            "the labels “../../bees” and “bees” would share one folder",
            response.json()["detail"],
        )

    def test_it_answers_400_without_labeled_images(self):
        add_image(self.project)
        response = self.api.post(self.url("api-dataset-versions"), {}, format="json")
        self.assertEqual(response.status_code, 400)
        self.assertEqual(
            response.data["non_field_errors"],
            ["There are no labeled images to publish: label some images first."],
        )

    def test_it_lists_and_retrieves_versions(self):
        add_images(self.project, {"ants": 2})
        first = publish_dataset_version(self.project)
        publish_dataset_version(self.project)
        response = self.api.get(self.url("api-dataset-versions"))
        self.assertEqual([v["name"] for v in response.data], ["V002", "V001"])

        response = self.api.get(self.url("api-dataset-version", first.pk))
        self.assertEqual(response.data["name"], "V001")
        self.assertEqual(response.data["label_names"], ["ants"])
        self.assertEqual(
            response.data["manifest_url"],
            self.url("api-dataset-version-manifest", first.pk),
        )

    def test_it_lists_items_with_usage(self):
        add_images(self.project, {"ants": 4})
        version = publish_dataset_version(self.project, train_ratio=0.5)
        response = self.api.get(self.url("api-dataset-version-items", version.pk))
        self.assertEqual(response.data["count"], 4)
        usages = sorted(item["usage"] for item in response.data["results"])
        self.assertEqual(usages, ["EVAL", "EVAL", "TRAIN", "TRAIN"])
        response = self.api.get(
            self.url("api-dataset-version-items", version.pk), {"usage": "eval"}
        )
        self.assertEqual(response.data["count"], 2)

    def test_it_deletes_a_version_and_refuses_one_in_use(self):
        add_images(self.project, {"ants": 2})
        unused = publish_dataset_version(self.project)
        used = publish_dataset_version(self.project)
        TrainingRun.objects.create(
            project=self.project, version="V001", dataset_version=used
        )

        response = self.api.delete(self.url("api-dataset-version", unused.pk))
        self.assertEqual(response.status_code, 204)
        response = self.api.delete(self.url("api-dataset-version", used.pk))
        self.assertEqual(response.status_code, 409)
        self.assertIn(
            "training version V001 was trained on it", response.data["detail"]
        )
        self.assertEqual(list(DatasetVersion.objects.all()), [used])

    def test_it_names_only_the_training_versions_in_the_way(self):
        add_images(self.project, {"ants": 2})
        used = publish_dataset_version(self.project)
        other = publish_dataset_version(self.project)
        for version, dataset in (("V001", used), ("V002", other), ("V003", used)):
            TrainingRun.objects.create(
                project=self.project,
                version=version,
                dataset_version=dataset,
                status=TrainingRun.Status.FAILED,
            )

        response = self.api.delete(self.url("api-dataset-version", used.pk))

        self.assertEqual(response.status_code, 409)
        self.assertEqual(
            response.data["detail"],
            f"Dataset version {used.name} cannot be deleted: training versions "
            "V001, V003 were trained on it. Delete those training versions first: "
            "open each on the Training versions page and choose Delete version.",
        )
        # Doing as it says works.
        for run in TrainingRun.objects.filter(dataset_version=used):
            response = self.api.delete(self.url("api-training-run", run.pk))
            self.assertEqual(response.status_code, 204)
        response = self.api.delete(self.url("api-dataset-version", used.pk))
        self.assertEqual(response.status_code, 204)
        self.assertEqual(list(DatasetVersion.objects.all()), [other])

    def test_it_downloads_the_manifest_and_exports(self):
        add_images(self.project, {"ants": 2, "bees": 2})
        version = publish_dataset_version(self.project)
        response = self.api.get(
            self.url("api-dataset-version-manifest", version.pk),
            HTTP_ACCEPT="application/jsonlines",
        )
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response["Content-Type"], "application/jsonlines")
        self.assertEqual(response.content.decode(), build_manifest(version))

        for name in (
            "api-dataset-version-export-folders",
            "api-dataset-version-export-modelarts",
        ):
            response = self.api.get(
                self.url(name, version.pk), HTTP_ACCEPT="application/zip"
            )
            self.assertEqual(response.status_code, 200)
            data = b"".join(response.streaming_content)
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                self.assertGreaterEqual(len(archive.namelist()), 4)

    def test_it_imports_a_manifest_zip(self):
        source = Project.objects.create(owner=self.alice, name="Source")
        add_images(source, {"ants": 2, "bees": 2})
        version = publish_dataset_version(source, train_ratio=0.5)
        upload = SimpleUploadedFile("v.zip", export_modelarts_zip(version).read())

        response = self.api.post(
            self.url("api-dataset-version-import"),
            {"file": upload, "name": "from-source"},
            format="multipart",
        )

        self.assertEqual(response.status_code, 201)
        self.assertEqual(response.data["dataset_version_name"], "from-source")
        self.assertEqual(response.data["imported"], 4)
        created = DatasetVersion.objects.get(project=self.project)
        self.assertEqual(created.label_counts, version.label_counts)

    def test_it_answers_400_with_a_per_line_report(self):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("x.manifest", json.dumps({"usage": "TRAIN"}) + "\n")
        upload = SimpleUploadedFile("x.zip", buffer.getvalue())
        response = self.api.post(
            self.url("api-dataset-version-import"), {"file": upload}, format="multipart"
        )
        self.assertEqual(response.status_code, 400)
        self.assertIsNone(response.data["dataset_version"])
        self.assertEqual(
            response.data["lines"][0]["message"],
            "No “source”: each line must name its image file.",
        )

    def test_it_works_with_a_token(self):
        token = Token.objects.create(user=self.alice)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        response = client.get(self.url("api-dataset-versions"))
        self.assertEqual(response.status_code, 200)

    def test_it_answers_404_for_another_users_project(self):
        add_images(self.project, {"ants": 2})
        version = publish_dataset_version(self.project)
        self.api.force_authenticate(self.bob)
        get_urls = [
            self.url("api-dataset-versions"),
            self.url("api-dataset-version", version.pk),
            self.url("api-dataset-version-items", version.pk),
            self.url("api-dataset-version-manifest", version.pk),
            self.url("api-dataset-version-export-folders", version.pk),
            self.url("api-dataset-version-export-modelarts", version.pk),
        ]
        for url in get_urls:
            with self.subTest(url=url):
                self.assertEqual(self.api.get(url).status_code, 404)
        self.assertEqual(
            self.api.post(self.url("api-dataset-versions"), {}).status_code, 404
        )
        self.assertEqual(
            self.api.delete(self.url("api-dataset-version", version.pk)).status_code,
            404,
        )
        upload = SimpleUploadedFile("x.zip", b"PK")
        response = self.api.post(
            self.url("api-dataset-version-import"), {"file": upload}, format="multipart"
        )
        self.assertEqual(response.status_code, 404)
        self.assertTrue(DatasetVersion.objects.filter(pk=version.pk).exists())

    def test_it_refuses_anonymous_requests(self):
        response = APIClient().get(self.url("api-dataset-versions"))
        self.assertIn(response.status_code, (401, 403))
