import re
from datetime import timedelta

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from tests.base import BaseTestCase
from training.evaluation import compute_metrics
from training.models import DatasetVersion, Service, TrainingRun

TWO = ["ants", "bees"]
THREE = ["ants", "bees", "wasps"]


class DashboardViewTests(BaseTestCase):
    def setUp(self):
        super().setUp()
        self.url = reverse("training:dashboard", args=[self.project.pk])
        self.first_dataset = DatasetVersion.objects.create(
            project=self.project, name="V001", train_ratio=0.8, seed=1
        )
        self.second_dataset = DatasetVersion.objects.create(
            project=self.project, name="V002", train_ratio=0.7, seed=2
        )
        self.start = timezone.now() - timedelta(hours=2)

    def make_run(self, version, labels, y_true, y_pred, *, seconds=30, **fields):
        metrics = compute_metrics(labels, y_true, y_pred)
        metrics["misclassified"] = []
        index = int(version[1:])
        started = self.start + timedelta(minutes=10 * index)
        fields = {
            "project": self.project,
            "version": version,
            "dataset_version": self.first_dataset,
            "status": TrainingRun.Status.SUCCEEDED,
            "label_names": labels,
            "model_file": f"projects/{self.project.pk}/models/{version}.pt",
            "metrics": metrics,
            "accuracy": metrics["accuracy"],
            "precision": metrics["precision"],
            "recall": metrics["recall"],
            "f1": metrics["f1"],
            "started_at": started,
            "finished_at": started + timedelta(seconds=seconds),
            **fields,
        }
        run = TrainingRun.objects.create(**fields)
        # created_at is set on insert; space the versions out as in real use.
        TrainingRun.objects.filter(pk=run.pk).update(created_at=started)
        run.refresh_from_db()
        return run

    def make_three_versions(self):
        # V001: 2 labels, accuracy 2/3; bees F1 2/3, ants F1 2/3.
        self.v1 = self.make_run("V001", TWO, [0, 1, 1], [0, 1, 0], seconds=95)
        # V002: 3 labels, accuracy 5/9, bees F1 4/7, wasps never predicted.
        self.v2 = self.make_run(
            "V002",
            THREE,
            [0, 0, 0, 0, 1, 1, 1, 2, 2],
            [0, 0, 0, 1, 1, 1, 0, 0, 1],
            seconds=12,
            dataset_version=self.second_dataset,
            preference=TrainingRun.Preference.ACCURACY_FIRST,
            incremental_from=None,
        )
        # V003: perfect on 2 labels.
        self.v3 = self.make_run(
            "V003", TWO, [0, 0, 1, 1], [0, 0, 1, 1], seconds=40,
            preference=TrainingRun.Preference.PERFORMANCE_FIRST,
            incremental_from=self.v1,
        )  # fmt: skip
        # A failed run has no figures and sorts last on every metric.
        self.v4 = TrainingRun.objects.create(
            project=self.project,
            version="V004",
            dataset_version=self.second_dataset,
            status=TrainingRun.Status.FAILED,
            status_message="Out of memory",
        )

    def versions_in_order(self, response):
        return re.findall(r'<tr data-version="(V\d+)">', response.content.decode())

    def row(self, response, version):
        html = response.content.decode()
        return re.search(rf'<tr data-version="{version}">(.*?)</tr>', html, re.S)[1]

    def test_it_lists_one_row_per_version_newest_first(self):
        self.make_three_versions()
        response = self.client.get(self.url)
        self.assertEqual(
            self.versions_in_order(response), ["V004", "V003", "V002", "V001"]
        )
        row = self.row(response, "V002")
        self.assertIn("<td>V002</td>", row)  # the dataset version
        self.assertIn("Accuracy first", row)
        self.assertIn("0.556", row)
        self.assertIn("0.413", row)
        self.assertIn("12.0 s", row)
        self.assertIn('class="badge succeeded"', row)
        self.assertIn("1 min 35 s", self.row(response, "V001"))
        self.assertIn("from V001", self.row(response, "V003"))
        self.assertEqual(response.context["section"], "dashboard")

    def test_it_sorts_on_a_metric_column_with_empty_values_last(self):
        self.make_three_versions()
        response = self.client.get(self.url, {"sort": "accuracy", "dir": "desc"})
        self.assertEqual(
            self.versions_in_order(response), ["V003", "V001", "V002", "V004"]
        )
        response = self.client.get(self.url, {"sort": "accuracy", "dir": "asc"})
        self.assertEqual(
            self.versions_in_order(response), ["V002", "V001", "V003", "V004"]
        )

    def test_it_sorts_on_duration_dataset_and_status(self):
        self.make_three_versions()
        response = self.client.get(self.url, {"sort": "duration", "dir": "asc"})
        self.assertEqual(
            self.versions_in_order(response), ["V002", "V003", "V001", "V004"]
        )
        response = self.client.get(self.url, {"sort": "dataset", "dir": "desc"})
        # Ties keep the newest version first.
        self.assertEqual(self.versions_in_order(response)[:2], ["V004", "V002"])
        response = self.client.get(self.url, {"sort": "status", "dir": "asc"})
        self.assertEqual(self.versions_in_order(response)[0], "V004")

    def test_it_ignores_an_unknown_sort_column(self):
        self.make_three_versions()
        response = self.client.get(self.url, {"sort": "model_file", "dir": "sideways"})
        self.assertEqual(response.status_code, 200)
        self.assertEqual(
            self.versions_in_order(response), ["V004", "V003", "V002", "V001"]
        )

    def test_it_links_headers_to_sort_and_flips_the_active_one(self):
        self.make_three_versions()
        response = self.client.get(self.url, {"sort": "f1", "dir": "desc"})
        self.assertContains(response, 'href="?sort=f1&amp;dir=asc" data-sort="f1"')
        self.assertContains(
            response, 'href="?sort=recall&amp;dir=desc" data-sort="recall"'
        )
        self.assertContains(response, 'aria-sort="descending"')

    def test_it_marks_the_best_value_of_each_metric(self):
        self.make_three_versions()
        response = self.client.get(self.url)
        best = self.row(response, "V003")
        for key in ["accuracy", "precision", "recall", "f1"]:
            self.assertIn(f'class="num {key} best"', best)
        self.assertNotIn(" best", self.row(response, "V001"))
        self.assertNotIn(" best", self.row(response, "V002"))
        self.assertEqual(response.content.decode().count(' best"'), 4)

    def test_it_marks_every_version_tied_for_best(self):
        self.make_run("V001", TWO, [0, 1], [0, 1])
        self.make_run("V002", TWO, [0, 1], [0, 1])
        response = self.client.get(self.url)
        self.assertIn('class="num accuracy best"', self.row(response, "V001"))
        self.assertIn('class="num accuracy best"', self.row(response, "V002"))

    def test_it_draws_the_metrics_of_the_versions_as_svg(self):
        self.make_three_versions()
        response = self.client.get(self.url)
        html = response.content.decode()
        chart = html[html.index('<svg class="chart bar-chart"') : html.index("</svg>")]
        # Three scored versions, four metrics each; the failed one has no bars.
        self.assertEqual(chart.count("<rect") - 4, 12)  # minus the legend swatches
        self.assertIn("V002 F1: 0.413", chart)
        self.assertNotIn("V004", chart)

    def test_it_compares_the_latest_two_versions_by_default(self):
        self.make_three_versions()
        comparison = self.client.get(self.url).context["comparison"]
        self.assertEqual(
            (comparison["first"], comparison["second"]), (self.v2, self.v3)
        )

    def test_it_compares_per_label_f1_of_two_chosen_versions(self):
        self.make_three_versions()
        response = self.client.get(self.url, {"a": self.v1.pk, "b": self.v2.pk})
        html = response.content.decode()
        table = html[html.index('class="table compare-table"') :]
        found = re.findall(r'<tr data-label="(\w+)">(.*?)</tr>', table, re.S)
        rows = dict(found)
        self.assertEqual(list(rows), ["ants", "bees", "wasps"])

        def cells(name):
            return re.findall(r'<td class="num[^"]*">([^<]*)</td>', rows[name])

        # ants: 2/3 in both; bees: 2/3 then 4/7; wasps only in V002.
        self.assertEqual(cells("ants"), ["0.667", "0.667", "0.000"])
        self.assertEqual(cells("bees"), ["0.667", "0.571", "-0.095"])
        self.assertEqual(cells("wasps"), ["–", "0.000", "–"])
        self.assertIn('class="num diff down">-0.095', rows["bees"])
        # The macro figures follow: accuracy 2/3 then 5/9.
        self.assertIn("-0.111", table)

    def test_it_shows_an_improvement_with_a_plus_sign(self):
        self.make_three_versions()
        response = self.client.get(self.url, {"a": self.v2.pk, "b": self.v3.pk})
        self.assertContains(response, 'class="num diff up">+0.429<')  # bees 4/7 -> 1
        self.assertContains(response, 'class="num diff up">+0.444<')  # accuracy

    def test_it_asks_again_for_versions_it_cannot_compare(self):
        self.make_three_versions()
        for bad in [{"a": "x", "b": self.v1.pk}, {"a": self.v4.pk, "b": self.v1.pk}]:
            response = self.client.get(self.url, bad)
            self.assertContains(
                response, "Choose two training versions that have metrics."
            )
            self.assertNotContains(response, "compare-table")

    def test_it_shows_the_service_of_a_deployed_version(self):
        self.make_three_versions()
        Service.objects.create(
            project=self.project, training_run=self.v3, status=Service.Status.RUNNING
        )
        response = self.client.get(self.url)
        self.assertIn('class="badge running"', self.row(response, "V003"))
        deploy = f"/training-versions/{self.v1.pk}/deploy/"
        if "deploy" in self.row(response, "V001"):
            self.assertIn(deploy, self.row(response, "V001"))
        self.assertNotIn("Deploy", self.row(response, "V004"))

    def test_it_uses_the_same_number_of_queries_for_2_and_12_versions(self):
        for n in range(1, 3):
            self.make_run(f"V{n:03d}", TWO, [0, 1, 1], [0, 1, n % 2])
        Service.objects.create(project=self.project, training_run_id=self.make_run(
            "V003", THREE, [0, 1, 2], [0, 1, 1]).pk)  # fmt: skip
        self.client.get(self.url)  # the first request of a session saves it
        with CaptureQueriesContext(connection) as few:
            self.client.get(self.url, {"sort": "f1"})
        for n in range(4, 13):
            self.make_run(
                f"V{n:03d}", THREE, [0, 1, 2, 2], [0, 1, 2, n % 3],
                dataset_version=self.second_dataset,
                incremental_from=TrainingRun.objects.get(version="V001"),
            )  # fmt: skip
        self.assertEqual(TrainingRun.objects.count(), 12)
        with self.assertNumQueries(len(few.captured_queries)):
            response = self.client.get(self.url, {"sort": "f1"})
        self.assertEqual(len(self.versions_in_order(response)), 12)

    def test_it_invites_to_train_when_there_is_no_version(self):
        response = self.client.get(self.url)
        self.assertContains(response, "No training versions yet.")

    def test_it_answers_404_for_another_users_project(self):
        self.client.force_login(self.bob)
        self.assertEqual(self.client.get(self.url).status_code, 404)
