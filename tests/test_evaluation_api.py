from datetime import timedelta

from django.utils import timezone

from tests.base import BaseTestCase
from training.evaluation import compute_metrics
from training.models import DatasetVersion, Service, TrainingRun

LABELS = ["ants", "bees", "wasps"]
Y_TRUE = [0, 0, 0, 0, 1, 1, 1, 2, 2]
Y_PRED = [0, 0, 0, 1, 1, 1, 0, 0, 1]


class EvaluationApiTests(BaseTestCase):
    def setUp(self):
        super().setUp()
        self.dataset = DatasetVersion.objects.create(
            project=self.project, name="V001", train_ratio=0.8, seed=3
        )
        metrics = compute_metrics(LABELS, Y_TRUE, Y_PRED)
        metrics["misclassified"] = [
            {"item_id": 11, "true": "ants", "predicted": "bees", "confidence": 0.6},
            {"item_id": 12, "true": "wasps", "predicted": "ants", "confidence": 0.9},
        ]
        metrics["timings"] = {"decode_embed_s": 8.0, "fit_s": 0.5, "total_s": 8.7}
        now = timezone.now()
        self.queued = TrainingRun.objects.create(
            project=self.project, version="V001", dataset_version=self.dataset
        )
        self.run = TrainingRun.objects.create(
            project=self.project,
            version="V002",
            dataset_version=self.dataset,
            incremental_from=self.queued,
            status=TrainingRun.Status.SUCCEEDED,
            label_names=LABELS,
            model_file="projects/1/models/run-2.pt",
            history=[{"epoch": 1, "loss": 0.7, "val_accuracy": 0.56}],
            metrics=metrics,
            accuracy=metrics["accuracy"],
            precision=metrics["precision"],
            recall=metrics["recall"],
            f1=metrics["f1"],
            started_at=now - timedelta(seconds=9),
            finished_at=now,
        )
        Service.objects.create(
            project=self.project, training_run=self.run, status=Service.Status.RUNNING
        )
        self.list_url = f"/api/projects/{self.project.pk}/training-versions"

    def test_it_lists_the_versions_with_their_metric_columns(self):
        response = self.client.get(self.list_url)
        self.assertEqual(response.status_code, 200)
        body = response.json()
        self.assertEqual(body["count"], 2)
        newest, oldest = body["results"]
        self.assertEqual(newest["version"], "V002")
        self.assertEqual(newest["dataset_version"], "V001")
        self.assertEqual(newest["incremental_from"], "V001")
        self.assertEqual(newest["status"], "succeeded")
        self.assertEqual(newest["preference"], "balance")
        self.assertAlmostEqual(newest["accuracy"], 5 / 9)
        self.assertAlmostEqual(newest["precision"], 1.1 / 3)
        self.assertAlmostEqual(newest["f1"], 26 / 63)
        self.assertAlmostEqual(newest["duration_seconds"], 9.0)
        self.assertTrue(newest["usable"])
        self.assertEqual(newest["service_status"], "running")
        self.assertEqual(oldest["version"], "V001")
        self.assertIsNone(oldest["accuracy"])
        self.assertIsNone(oldest["incremental_from"])
        self.assertIsNone(oldest["service_status"])
        self.assertFalse(oldest["usable"])

    def test_it_gives_a_versions_full_metrics(self):
        url = f"{self.list_url}/V002/metrics"
        body = self.client.get(url).json()
        self.assertEqual(body["version"], "V002")
        self.assertEqual(body["labels"], LABELS)
        self.assertEqual(body["count"], 9)
        self.assertEqual(body["confusion_matrix"], [[3, 1, 0], [1, 2, 0], [1, 1, 0]])
        self.assertEqual(
            body["per_label"]["wasps"],
            {
                "precision": 0.0,
                "recall": 0.0,
                "f1": 0.0,
                "support": 2,
                "never_predicted": True,
            },
        )
        self.assertAlmostEqual(body["per_label"]["ants"]["precision"], 0.6)
        self.assertEqual([m["item_id"] for m in body["misclassified"]], [12, 11])
        self.assertEqual(
            body["misclassified"][0],
            {"item_id": 12, "true": "wasps", "predicted": "ants", "confidence": 0.9},
        )
        self.assertEqual(
            body["history"], [{"epoch": 1, "loss": 0.7, "val_accuracy": 0.56}]
        )
        self.assertEqual(body["timings"]["fit_s"], 0.5)

    def test_it_finds_a_version_by_its_id_too(self):
        body = self.client.get(f"{self.list_url}/{self.run.pk}/metrics").json()
        self.assertEqual(body["version"], "V002")

    def test_it_answers_for_a_version_still_in_the_queue(self):
        body = self.client.get(f"{self.list_url}/V001/metrics").json()
        self.assertEqual(body["status"], "queued")
        self.assertIsNone(body["accuracy"])
        self.assertEqual(body["per_label"], {})
        self.assertEqual(body["confusion_matrix"], [])

    def test_it_answers_404_for_an_unknown_version(self):
        response = self.client.get(f"{self.list_url}/V999/metrics")
        self.assertEqual(response.status_code, 404)

    def test_it_answers_404_for_an_id_that_is_not_a_plain_number(self):
        for key in ["²", "9223372036854775808", "99999999999999999999", "0"]:
            with self.subTest(key=key):
                response = self.client.get(f"{self.list_url}/{key}/metrics")
                self.assertEqual(response.status_code, 404)
                self.assertEqual(
                    response.json(), {"detail": "No such training version."}
                )

    def test_it_answers_404_for_another_users_project(self):
        self.client.force_login(self.bob)
        self.assertEqual(self.client.get(self.list_url).status_code, 404)
        response = self.client.get(f"{self.list_url}/V002/metrics")
        self.assertEqual(response.status_code, 404)
        response = self.client.get(f"{self.list_url}/{self.run.pk}/metrics")
        self.assertEqual(response.status_code, 404)

    def test_it_refuses_anonymous_requests(self):
        self.client.logout()
        self.assertIn(self.client.get(self.list_url).status_code, (401, 403))
