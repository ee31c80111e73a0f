from unittest import mock

from django.utils import timezone
from django_q.conf import Conf

from projects import storage
from projects.models import Project
from tests.base import BaseTestCase
from tests.training_fixtures import import_photos
from training import deployment, serving
from training.datasets import publish_dataset_version
from training.models import DatasetVersion, Service, TrainingRun


def queued_only():
    """Queue tasks in the database as production does, without running them."""
    return mock.patch.object(Conf, "SYNC", False)


class TrainingRunsApiTests(BaseTestCase):
    def setUp(self):
        super().setUp()
        self.url = f"/api/projects/{self.project.pk}/training-runs"

    def _ready(self):
        import_photos(self.project, "ants", 6)
        import_photos(self.project, "bees", 6)

    def test_it_refuses_a_project_that_is_not_ready_with_the_reasons(self):
        import_photos(self.project, "ants", 6)
        import_photos(self.project, "bees", 2)

        response = self.client.post(self.url, {}, content_type="application/json")

        self.assertEqual(response.status_code, 400)
        self.assertEqual(response.json()["missing"], ["bees needs 3 more images"])
        self.assertIn("not ready to train", response.json()["detail"])
        self.assertFalse(TrainingRun.objects.exists())

    def test_it_refuses_fields_out_of_range(self):
        self._ready()
        other = Project.objects.create(owner=self.bob, name="Bob's")
        DatasetVersion.objects.create(project=other, name="B1", train_ratio=1, seed=1)
        cases = [
            ({"train_ratio": -0.5}, "train_ratio"),
            ({"train_ratio": 1.5}, "train_ratio"),
            ({"max_minutes": 5}, "max_minutes"),
            ({"max_minutes": 6001}, "max_minutes"),
            ({"preference": "fastest"}, "preference"),
            ({"flavor": "tpu"}, "flavor"),
            ({"incremental_from": "V009"}, "incremental_from"),
            ({"dataset_version": "B1"}, "dataset_version"),
            ({"dataset_version_name": "bad name!"}, "dataset_version_name"),
        ]
        for body, field in cases:
            with self.subTest(body=body):
                response = self.client.post(
                    self.url, body, content_type="application/json"
                )
                self.assertEqual(response.status_code, 400)
                self.assertIn(field, response.json())
        self.assertFalse(TrainingRun.objects.exists())

    def test_it_refuses_a_boolean_or_a_word_as_training_ratio(self):
        self._ready()
        refusal = "The training ratio must be a number from 0 to 1"
        cases = [
            (True, f"{refusal}."),
            (False, f"{refusal}."),
            ("true", f"{refusal}, not “true”."),
            ("0.5x", f"{refusal}, not “0.5x”."),
        ]
        for value, message in cases:
            with self.subTest(value=value):
                response = self.client.post(
                    self.url, {"train_ratio": value}, content_type="application/json"
                )
                self.assertEqual(response.status_code, 400)
                self.assertEqual(response.json(), {"train_ratio": [message]})
        self.assertFalse(TrainingRun.objects.exists())
        self.assertFalse(DatasetVersion.objects.exists())

    def test_it_refuses_an_existing_dataset_version_with_a_new_name_or_ratio(self):
        self._ready()
        publish_dataset_version(self.project, name="V001", train_ratio=0.67)
        cases = [
            (
                {"dataset_version": "V001", "dataset_version_name": "spring"},
                "dataset_version_name",
                "Give dataset_version (train on an existing dataset version) or "
                "dataset_version_name (publish a new one), not both.",
            ),
            (
                {"dataset_version": "V001", "train_ratio": 0.5},
                "train_ratio",
                "Dataset version V001 keeps its own split (training ratio 0.67); "
                "train_ratio applies only when a new dataset version is published. "
                "Leave it out.",
            ),
        ]
        for body, field, message in cases:
            with self.subTest(body=body), queued_only():
                response = self.client.post(
                    self.url, body, content_type="application/json"
                )
                self.assertEqual(response.status_code, 400)
                self.assertEqual(response.json(), {field: [message]})
        self.assertFalse(TrainingRun.objects.exists())
        self.assertEqual(
            list(DatasetVersion.objects.values_list("name", flat=True)), ["V001"]
        )

    def test_it_starts_a_run(self):
        self._ready()
        body = {
            "preference": "performance_first",
            "max_minutes": 10,
            "train_ratio": 0.5,
        }
        with queued_only():
            response = self.client.post(self.url, body, content_type="application/json")

        self.assertEqual(response.status_code, 201)
        data = response.json()
        self.assertEqual(data["version"], "V001")
        self.assertEqual(data["status"], "queued")
        self.assertEqual(data["preference"], "performance_first")
        self.assertEqual(data["max_minutes"], 10)
        self.assertEqual(data["train_ratio"], 0.5)
        self.assertEqual(data["dataset_version"], "V001")

    def test_it_trains_and_reports_progress_and_metrics(self):
        self._ready()
        response = self.client.post(
            self.url, {"train_ratio": 0.67}, content_type="application/json"
        )
        run_id = response.json()["id"]

        detail = self.client.get(f"{self.url}/{run_id}").json()

        self.assertEqual(detail["status"], "succeeded")
        self.assertEqual(detail["progress"], 1.0)
        self.assertEqual(detail["label_names"], ["ants", "bees"])
        self.assertEqual(detail["accuracy"], detail["metrics"]["accuracy"])
        self.assertIn("misclassified", detail["metrics"])
        self.assertTrue(detail["usable"])
        listing = self.client.get(self.url).json()
        self.assertEqual([row["version"] for row in listing], ["V001"])

    def test_it_trains_incrementally_from_a_named_version(self):
        self._ready()
        self.client.post(
            self.url, {"train_ratio": 0.67}, content_type="application/json"
        )

        response = self.client.post(
            self.url,
            {"incremental_from": "V001", "dataset_version": "V001"},
            content_type="application/json",
        )

        self.assertEqual(response.status_code, 201, response.json())
        run = TrainingRun.objects.get(version="V002")
        self.assertEqual(run.incremental_from.version, "V001")
        self.assertEqual(run.status, TrainingRun.Status.SUCCEEDED)

    def test_it_cancels_a_run(self):
        self._ready()
        with queued_only():
            run_id = self.client.post(
                self.url, {}, content_type="application/json"
            ).json()["id"]

        response = self.client.post(f"{self.url}/{run_id}/cancel")

        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.json()["status"], "cancelled")
        again = self.client.post(f"{self.url}/{run_id}/cancel")
        self.assertEqual(again.status_code, 409)

    def test_it_deletes_a_version_with_its_service_and_model_file(self):
        self._ready()
        self.client.post(
            self.url, {"train_ratio": 0.67}, content_type="application/json"
        )
        first = TrainingRun.objects.get(version="V001")
        self.client.post(
            self.url,
            {"incremental_from": "V001", "dataset_version": "V001"},
            content_type="application/json",
        )
        service = deployment.deploy(first)
        self.assertEqual(service.status, Service.Status.RUNNING)
        self.assertEqual(serving.loaded_service_ids(), [service.pk])
        model = storage.media_path(first.model_file)

        with self.captureOnCommitCallbacks(execute=True):
            response = self.client.delete(f"{self.url}/{first.pk}")

        self.assertEqual(response.status_code, 204)
        self.assertFalse(TrainingRun.objects.filter(pk=first.pk).exists())
        self.assertFalse(Service.objects.exists())
        self.assertEqual(serving.loaded_service_ids(), [])
        self.assertFalse(model.exists())
        # The version trained from it keeps its model and the source's name.
        second = TrainingRun.objects.get(version="V002")
        self.assertTrue(second.is_usable)
        self.assertTrue(storage.media_path(second.model_file).is_file())
        detail = self.client.get(f"{self.url}/{second.pk}").json()
        self.assertIsNone(detail["incremental_from"])
        self.assertEqual(detail["incremental_from_version"], "V001")
        self.assertEqual(self.client.get(f"{self.url}/{first.pk}").status_code, 404)

    def test_it_refuses_to_delete_a_version_still_queued_or_training(self):
        self._ready()
        with queued_only():
            run_id = self.client.post(
                self.url, {}, content_type="application/json"
            ).json()["id"]

        response = self.client.delete(f"{self.url}/{run_id}")

        self.assertEqual(response.status_code, 409)
        self.assertEqual(
            response.json()["detail"],
            "Training version V001 is still queued; cancel it first, then delete it.",
        )
        now = timezone.now()
        TrainingRun.objects.filter(pk=run_id).update(
            status="running", started_at=now, heartbeat_at=now
        )
        response = self.client.delete(f"{self.url}/{run_id}")
        self.assertEqual(response.status_code, 409)
        self.assertIn("is still training; cancel it first", response.json()["detail"])
        self.assertEqual(TrainingRun.objects.get().status, TrainingRun.Status.RUNNING)

    def test_it_answers_404_for_another_users_project(self):
        self._ready()
        with queued_only():
            run_id = self.client.post(
                self.url, {}, content_type="application/json"
            ).json()["id"]
        self.client.force_login(self.bob)

        self.assertEqual(self.client.get(self.url).status_code, 404)
        self.assertEqual(self.client.post(self.url, {}).status_code, 404)
        self.assertEqual(self.client.get(f"{self.url}/{run_id}").status_code, 404)
        self.assertEqual(
            self.client.post(f"{self.url}/{run_id}/cancel").status_code, 404
        )
        self.assertEqual(self.client.delete(f"{self.url}/{run_id}").status_code, 404)
        self.assertEqual(TrainingRun.objects.get().status, TrainingRun.Status.QUEUED)

    def test_it_requires_a_login(self):
        self.client.logout()
        self.assertIn(self.client.get(self.url).status_code, (401, 403))
