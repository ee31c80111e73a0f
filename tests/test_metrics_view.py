import re
from datetime import timedelta

from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from projects.models import Image, Label, Project
from tests.base import BaseTestCase
from training.evaluation import compute_metrics
from training.models import DatasetVersion, DatasetVersionItem, Service, TrainingRun
from training.runs import delete_training_run

LABELS = ["ants", "bees", "wasps"]
Y_TRUE = [0, 0, 0, 0, 1, 1, 1, 2, 2]
Y_PRED = [0, 0, 0, 1, 1, 1, 0, 0, 1]


def url_or_none(name, args):
    try:
        return reverse(name, args=args)
    except NoReverseMatch:
        return None


class MetricsViewTests(BaseTestCase):
    def setUp(self):
        super().setUp()
        self.dataset = DatasetVersion.objects.create(
            project=self.project,
            name="V001",
            train_ratio=0.8,
            seed=7,
            image_count=45,
            label_names=LABELS,
        )
        bees = Label.objects.create(project=self.project, name="bees")
        # The four mistakes: two images still in the project, one relabeled
        # since, one deleted (its dataset item keeps the file).
        self.items = {}
        for n, (true, label) in enumerate(
            [("ants", None), ("bees", None), ("wasps", bees), ("wasps", None)]
        ):
            image = Image.objects.create(
                project=self.project,
                label=label,
                file=f"projects/1/images/{n}.jpg",
                thumbnail=f"projects/1/thumbs/{n}.jpg",
                original_name=f"mistake-{n}.jpg",
                sha256=f"{n:064d}",
                width=500,
                height=375,
                format="JPEG",
                size_bytes=1000,
            )
            self.items[n] = DatasetVersionItem.objects.create(
                dataset_version=self.dataset,
                image=image,
                file=image.file,
                thumbnail=image.thumbnail,
                original_name=image.original_name,
                sha256=image.sha256,
                label_name=true,
                usage=DatasetVersionItem.Usage.EVAL,
            )
        self.deleted_image = self.items[3].image
        self.deleted_image.delete()

        metrics = compute_metrics(LABELS, Y_TRUE, Y_PRED)
        # Stored in no particular order: the page sorts them.
        metrics["misclassified"] = [
            {"item_id": self.items[0].pk, "true": "ants", "predicted": "bees",
             "confidence": 0.55},
            {"item_id": self.items[1].pk, "true": "bees", "predicted": "ants",
             "confidence": 0.97},
            {"item_id": self.items[2].pk, "true": "wasps", "predicted": "bees",
             "confidence": 0.71},
            {"item_id": self.items[3].pk, "true": "wasps", "predicted": "ants",
             "confidence": 0.62},
        ]  # fmt: skip
        metrics["timings"] = {"decode_embed_s": 8.2, "fit_s": 0.6, "total_s": 9.1}
        now = timezone.now()
        self.previous = TrainingRun.objects.create(
            project=self.project,
            version="V001",
            dataset_version=self.dataset,
            status=TrainingRun.Status.FAILED,
            status_message="The worker stopped answering.",
        )
        self.run = TrainingRun.objects.create(
            project=self.project,
            version="V002",
            dataset_version=self.dataset,
            train_ratio=0.8,
            preference=TrainingRun.Preference.BALANCE,
            max_minutes=60,
            incremental_from=self.previous,
            status=TrainingRun.Status.SUCCEEDED,
            history=[
                {"epoch": 1, "loss": 0.92, "val_accuracy": 0.44},
                {"epoch": 2, "loss": 0.61, "val_accuracy": 0.51},
                {"epoch": 3, "loss": 0.48, "val_accuracy": 0.56},
            ],
            label_names=LABELS,
            model_file="projects/1/models/run-2.pt",
            model_size_bytes=5 * 1024 * 1024,
            accuracy=metrics["accuracy"],
            precision=metrics["precision"],
            recall=metrics["recall"],
            f1=metrics["f1"],
            metrics=metrics,
            started_at=now - timedelta(seconds=12),
            finished_at=now,
        )
        self.url = reverse("training:metrics", args=[self.project.pk, self.run.pk])

    def test_it_shows_accuracy_and_macro_figures(self):
        response = self.client.get(self.url)
        self.assertContains(
            response,
            '<span class="metric-value" id="metric-accuracy">0.556</span>',
            html=True,
        )
        self.assertContains(response, "0.367")  # macro precision (0.6 + 0.5 + 0) / 3
        self.assertContains(response, "0.472")  # macro recall
        self.assertContains(response, "0.413")  # macro F1 = 26 / 63
        self.assertEqual(response.context["section"], "dashboard")

    def test_it_shows_each_labels_precision_recall_f1_and_support(self):
        html = self.client.get(self.url).content.decode()
        table = html[html.index('class="table per-label"') :]
        rows = re.findall(r"<tr>\s*<td>(\w+).*?</tr>", table, re.S)
        self.assertEqual(rows, ["ants", "bees", "wasps"])
        figures = re.findall(
            r'<td class="num">([\d.]+)</td>', table.split("</tbody>")[0]
        )
        self.assertEqual(
            figures,
            ["0.600", "0.750", "0.667", "4",
             "0.500", "0.667", "0.571", "3",
             "0.000", "0.000", "0.000", "2"],
        )  # fmt: skip

    def test_it_explains_precision_and_recall_with_different_sentences(self):
        response = self.client.get(self.url)
        self.assertContains(
            response, "Of the images the model called L, the share that really are L."
        )
        self.assertContains(
            response, "Of the images that really are L, the share the model found."
        )

    def test_it_says_a_never_predicted_label_has_precision_zero_by_definition(self):
        response = self.client.get(self.url)
        self.assertContains(response, "never predicted</span>", count=1)
        self.assertContains(
            response,
            "The model never predicted <strong>wasps</strong> for any validation "
            "image, so its precision is 0 of 0 images: it is defined as 0 here",
        )

    def test_it_draws_the_confusion_matrix_with_true_labels_on_rows(self):
        html = self.client.get(self.url).content.decode()
        matrix = html[html.index('class="confusion-matrix"') :]
        counts = re.findall(r'<td class="cell num[^"]*"[^>]*>(\d+)</td>', matrix)
        self.assertEqual([int(c) for c in counts], [3, 1, 0, 1, 2, 0, 1, 1, 0])
        self.assertIn("True label", matrix)
        self.assertIn("Predicted label", matrix)
        # The busiest cell is the darkest, and a mistake is red, not blue.
        self.assertIn(
            'style="background: rgba(43, 89, 195, 1.00); color: #fff;"', matrix
        )
        self.assertIn("background: rgba(192, 57, 43, 0.41)", matrix)
        self.assertIn('title="1 image of bees predicted as ants (33% of bees)"', matrix)

    def test_it_lists_mistakes_most_confident_first(self):
        response = self.client.get(self.url)
        html = response.content.decode()
        order = [html.index(f"mistake-{n}.jpg") for n in (1, 2, 3, 0)]
        self.assertEqual(order, sorted(order))
        confidences = re.findall(r'<span class="confidence">(\d+)%</span>', html)
        self.assertEqual(confidences, ["97", "71", "62", "55"])
        self.assertContains(response, "now labeled bees")
        self.assertContains(response, "image no longer in the project")

    def test_it_links_each_mistake_to_the_labeling_view(self):
        focus_url = url_or_none("labeling:focus", [self.project.pk])
        if focus_url is None:
            self.skipTest("the labeling focus view is not installed")
        response = self.client.get(self.url)
        for n in (0, 1, 2):
            image_id = self.items[n].image_id
            self.assertContains(response, f'href="{focus_url}?image={image_id}"')
        self.assertContains(response, f"{focus_url}?image=", count=3)

    def test_it_shows_dataset_item_thumbnails(self):
        thumb = url_or_none(
            "training:dataset_item_thumb", [self.project.pk, self.items[3].pk]
        )
        if thumb is None:
            self.skipTest("the dataset item thumbnail view is not installed")
        self.assertContains(self.client.get(self.url), f'src="{thumb}"')

    def test_it_draws_the_training_curves_as_svg(self):
        response = self.client.get(self.url)
        html = response.content.decode()
        self.assertEqual(html.count('<svg class="chart line-chart"'), 2)
        self.assertContains(response, "Validation accuracy, Epoch 3: 0.56")
        self.assertContains(response, "Training loss, Epoch 1: 0.92")
        self.assertNotContains(response, "cdn")

    def test_it_shows_the_parameters_timings_and_model_size(self):
        response = self.client.get(self.url)
        self.assertContains(response, "<dt>Preference</dt><dd>Balance</dd>", html=True)
        self.assertContains(response, "<dt>Max duration</dt><dd>60 min</dd>", html=True)
        self.assertContains(response, "<dt>Instance flavor</dt><dd>CPU</dd>", html=True)
        self.assertContains(
            response, "<dt>Training / validation ratio</dt><dd>0.80</dd>", html=True
        )
        previous_url = reverse(
            "training:metrics", args=[self.project.pk, self.previous.pk]
        )
        self.assertContains(response, f'<a href="{previous_url}">V001</a>', html=True)
        self.assertContains(response, "<dt>Duration</dt><dd>12.0 s</dd>", html=True)
        self.assertContains(
            response, "<dt>Fitting the classifier</dt><dd>0.6 s</dd>", html=True
        )
        self.assertContains(
            response, "<dt>Model size</dt><dd>5.0\xa0MB</dd>", html=True
        )

    def test_it_offers_deploy_for_a_usable_version(self):
        deploy_url = url_or_none("training:deploy", [self.project.pk, self.run.pk])
        if deploy_url is None:
            self.skipTest("deployment is not installed")
        self.assertContains(self.client.get(self.url), f'action="{deploy_url}"')

    def test_it_shows_the_service_instead_of_deploy_once_deployed(self):
        Service.objects.create(
            project=self.project, training_run=self.run, status=Service.Status.RUNNING
        )
        response = self.client.get(self.url)
        self.assertContains(response, '<span class="badge running">Running</span>')
        self.assertNotContains(response, ">Deploy</button>")

    def test_it_links_the_version_it_started_from(self):
        source_url = reverse(
            "training:metrics", args=[self.project.pk, self.previous.pk]
        )
        response = self.client.get(self.url)
        self.assertContains(
            response,
            f'<dt>Incremental from</dt><dd><a href="{source_url}">V001</a></dd>',
            html=True,
        )

    def test_it_says_the_version_it_started_from_was_deleted(self):
        TrainingRun.objects.filter(pk=self.run.pk).update(
            incremental_from_version="V001"
        )
        delete_training_run(self.previous)

        response = self.client.get(self.url)

        self.assertEqual(response.status_code, 200)
        self.assertContains(
            response,
            '<dt>Incremental from</dt><dd>V001 <span class="muted">(since deleted)'
            "</span></dd>",
            html=True,
        )

    def test_it_offers_to_delete_a_version_that_has_ended(self):
        delete_url = reverse("training:run_delete", args=[self.project.pk, self.run.pk])
        response = self.client.get(self.url)
        self.assertContains(
            response, f'<a href="{delete_url}" class="danger">Delete version</a>'
        )

        TrainingRun.objects.filter(pk=self.run.pk).update(status="queued")
        response = self.client.get(self.url)
        self.assertNotContains(response, delete_url)

    def test_it_points_at_the_weakest_label(self):
        response = self.client.get(self.url)
        self.assertContains(response, "The weakest label is <strong>wasps</strong>.")

    def test_it_says_why_a_run_failed(self):
        url = reverse("training:metrics", args=[self.project.pk, self.previous.pk])
        response = self.client.get(url)
        self.assertContains(response, "Training failed.")
        self.assertContains(response, "The worker stopped answering.")
        self.assertNotContains(response, "Confusion matrix")

    def test_it_points_a_running_version_to_its_run_page(self):
        self.run.status = TrainingRun.Status.RUNNING
        self.run.metrics = {}
        self.run.phase = "embedding images"
        self.run.save()
        response = self.client.get(self.url)
        self.assertContains(
            response, "This version is still training (embedding images)"
        )
        self.assertNotContains(response, "Confusion matrix")
        run_url = url_or_none("training:run", [self.project.pk, self.run.pk])
        if run_url:
            self.assertContains(response, f'href="{run_url}"')

    def test_it_says_when_every_validation_image_was_right(self):
        metrics = compute_metrics(["ants", "bees"], [0, 1], [0, 1])
        metrics["misclassified"] = []
        self.run.metrics = metrics
        self.run.save()
        response = self.client.get(self.url)
        self.assertContains(
            response, "The model labeled every validation image correctly."
        )

    def test_it_answers_404_for_another_users_project(self):
        self.client.force_login(self.bob)
        self.assertEqual(self.client.get(self.url).status_code, 404)

    def test_it_answers_404_for_a_run_of_another_project(self):
        other = Project.objects.create(owner=self.alice, name="Flowers")
        url = reverse("training:metrics", args=[other.pk, self.run.pk])
        self.assertEqual(self.client.get(url).status_code, 404)
