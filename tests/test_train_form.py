from datetime import timedelta
from unittest import mock

from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_q.conf import Conf

from projects import storage
from projects.models import Image, Label, Project
from tests.base import BaseTestCase
from tests.trained import make_run
from tests.training_fixtures import import_photos
from training.datasets import current_dataset_version, publish_dataset_version
from training.models import DatasetVersion, Service, TrainingRun
from training.runs import start_training


def queued_only():
    """Queue tasks in the database as production does, without running them."""
    return mock.patch.object(Conf, "SYNC", False)


VALID = {
    "dataset_version": "",
    "dataset_version_name": "V001",
    "train_ratio": "0.67",
    "incremental_from": "",
    "max_minutes": "60",
    "preference": "balance",
    "flavor": "cpu",
}


class TrainPageTests(BaseTestCase):
    def setUp(self):
        super().setUp()
        self.url = reverse("training:train", args=[self.project.pk])

    def _ready(self):
        import_photos(self.project, "ants", 6)
        import_photos(self.project, "bees", 6)

    def test_it_disables_train_with_the_reasons_until_the_project_is_ready(self):
        import_photos(self.project, "ants", 5)
        import_photos(self.project, "bees", 4)

        response = self.client.get(self.url)

        self.assertContains(response, 'id="train-button" disabled')
        self.assertContains(response, "bees needs 1 more image")
        self.assertEqual(response.context["section"], "train")

    def test_it_enables_train_when_the_project_is_ready(self):
        self._ready()
        response = self.client.get(self.url)
        self.assertContains(
            response, '<button type="submit" class="primary" id="train-button">'
        )
        self.assertContains(response, "Ready to train")

    def test_it_refuses_to_train_a_project_that_is_not_ready(self):
        import_photos(self.project, "ants", 5)

        response = self.client.post(self.url, VALID)

        self.assertEqual(response.status_code, 200)
        self.assertContains(response, "add 1 more label with at least 5 images each")
        self.assertFalse(TrainingRun.objects.exists())
        self.assertFalse(DatasetVersion.objects.exists())

    def test_it_proposes_the_dataset_version_name_and_shows_every_field(self):
        self._ready()
        publish_dataset_version(self.project, seed=1)

        response = self.client.get(self.url)

        form = response.context["form"]
        self.assertEqual(form.initial["dataset_version_name"], "V002")
        self.assertEqual(form["train_ratio"].value(), 0.8)
        self.assertEqual(form["max_minutes"].value(), 60)
        self.assertEqual(form["preference"].value(), "balance")
        self.assertContains(response, "Performance first")
        self.assertContains(response, "EfficientNet-Lite2")
        self.assertContains(response, '<option value="cpu" selected>CPU</option>')

    def test_it_starts_training_and_shows_the_run_page_at_once(self):
        self._ready()
        with queued_only():
            response = self.client.post(self.url, VALID)

        run = TrainingRun.objects.get()
        run_url = reverse("training:run", args=[self.project.pk, run.pk])
        self.assertRedirects(response, f"{run_url}?follow=1")
        self.assertEqual(run.status, TrainingRun.Status.QUEUED)
        self.assertEqual(run.dataset_version.name, "V001")
        self.assertEqual(run.created_by, self.alice)

    def test_it_trains_on_an_existing_dataset_version(self):
        self._ready()
        version = publish_dataset_version(self.project, name="spring", train_ratio=0.5)
        # The page disables the new version's fields, so the browser leaves
        # them out.
        data = {**VALID, "dataset_version": version.pk}
        del data["dataset_version_name"], data["train_ratio"]
        with queued_only():
            self.client.post(self.url, data)

        run = TrainingRun.objects.get()
        self.assertEqual(run.dataset_version, version)
        self.assertEqual(run.train_ratio, 0.5)
        self.assertEqual(DatasetVersion.objects.count(), 1)

    def test_it_refuses_a_new_versions_name_or_ratio_with_an_existing_version(self):
        self._ready()
        version = publish_dataset_version(self.project, name="spring", train_ratio=0.5)

        response = self.client.post(self.url, {**VALID, "dataset_version": version.pk})

        self.assertEqual(response.status_code, 200)
        errors = response.context["form"].errors
        self.assertEqual(
            errors["dataset_version_name"],
            [
                "You chose the existing dataset version spring: leave the new "
                "version's name empty, or choose to publish a new version."
            ],
        )
        self.assertEqual(
            errors["train_ratio"],
            [
                "Dataset version spring keeps its own split (training ratio 0.5): "
                "leave the training ratio empty, or choose to publish a new version."
            ],
        )
        self.assertFalse(TrainingRun.objects.exists())
        self.assertEqual(DatasetVersion.objects.count(), 1)

    def test_it_needs_a_ratio_for_a_new_dataset_version(self):
        self._ready()
        response = self.client.post(self.url, {**VALID, "train_ratio": ""})
        self.assertEqual(
            response.context["form"].errors["train_ratio"],
            ["Give the training ratio of the new dataset version (0 to 1)."],
        )
        self.assertFalse(DatasetVersion.objects.exists())

    def test_it_switches_the_new_version_fields_off_for_an_existing_version(self):
        self._ready()
        response = self.client.get(self.url)
        self.assertContains(response, "js/train_form.js")

    def test_it_proposes_the_latest_dataset_version_when_it_has_the_labels(self):
        self._ready()
        publish_dataset_version(self.project, seed=1)
        latest = publish_dataset_version(self.project, seed=2)

        response = self.client.get(self.url)

        form = response.context["form"]
        self.assertEqual(form["dataset_version"].value(), latest.pk)
        self.assertContains(response, f'<option value="{latest.pk}" selected>V002:')
        # The new version's fields start switched off, as the script keeps them.
        self.assertContains(response, 'name="dataset_version_name" value="V003"')
        self.assertIn("disabled", str(form["dataset_version_name"]))
        self.assertIn("disabled", str(form["train_ratio"]))

    def test_it_trains_on_the_proposed_version_as_the_page_comes(self):
        self._ready()
        version = publish_dataset_version(self.project, seed=1)
        form = self.client.get(self.url).context["form"]
        # What a browser sends: every enabled field with its initial value.
        data = {
            name: "" if form[name].value() is None else form[name].value()
            for name, field in form.fields.items()
            if "disabled" not in field.widget.attrs
        }
        self.assertEqual(data["dataset_version"], version.pk)

        with queued_only():
            self.client.post(self.url, data)

        run = TrainingRun.objects.get()
        self.assertEqual(run.dataset_version, version)
        self.assertEqual(DatasetVersion.objects.count(), 1)

    def test_it_proposes_a_new_version_once_the_labels_changed(self):
        self._ready()
        ants = Label.objects.get(project=self.project, name="ants")
        bees = Label.objects.get(project=self.project, name="bees")
        images = Image.objects.filter(project=self.project).order_by("id")

        def rename():
            bees.name = "honeybees"
            bees.save()

        def relabel():
            images.filter(pk=images.filter(label=bees).first().pk).update(label=ants)

        def trash():
            images.filter(pk=images.first().pk).update(trashed_at=timezone.now())

        changes = {
            "an image added": lambda: import_photos(self.project, "ants", 1, skip=6),
            "a label renamed": rename,
            "an image relabeled": relabel,
            "an image trashed": trash,
        }
        for what, change in changes.items():
            publish_dataset_version(self.project)
            change()
            with self.subTest(what):
                form = self.client.get(self.url).context["form"]
                self.assertIsNone(form["dataset_version"].value())
                self.assertNotIn("disabled", str(form["dataset_version_name"]))
                self.assertNotIn("disabled", str(form["train_ratio"]))

    def test_it_does_not_propose_a_version_with_one_label_to_train_on(self):
        self._ready()
        publish_dataset_version(self.project, train_ratio=0)
        response = self.client.get(self.url)
        self.assertIsNone(response.context["form"]["dataset_version"].value())

    def test_it_compares_the_labels_in_the_same_number_of_queries(self):
        self._ready()
        publish_dataset_version(self.project, seed=1)
        with CaptureQueriesContext(connection) as few:
            current_dataset_version(self.project)
        import_photos(self.project, "ants", 10, skip=6)
        import_photos(self.project, "bees", 10, skip=6)
        latest = publish_dataset_version(self.project, seed=1)

        with CaptureQueriesContext(connection) as many:
            self.assertEqual(current_dataset_version(self.project), latest)
        self.assertEqual(len(many), len(few))

    def test_it_says_what_incremental_training_keeps(self):
        self._ready()
        response = self.client.get(self.url)
        self.assertContains(
            response,
            "Continues with the source version&#x27;s network; the preference only "
            "sets the training schedule.",
        )

    def test_it_refuses_incremental_training_validated_on_its_sources_images(self):
        self._ready()
        first = publish_dataset_version(self.project, train_ratio=0.5, seed=1)
        second = publish_dataset_version(self.project, train_ratio=0.5, seed=2)
        source = make_run(self.project)
        TrainingRun.objects.filter(pk=source.pk).update(dataset_version=second)
        data = {**VALID, "dataset_version": first.pk, "incremental_from": source.pk}
        del data["dataset_version_name"], data["train_ratio"]

        response = self.client.post(self.url, data)

        self.assertEqual(response.status_code, 200)
        [error] = response.context["form"].errors["incremental_from"]
        self.assertRegex(
            error,
            r"^\d+ validation images of dataset version V001 were training images of "
            r"V002, which training version V001 learned from",
        )
        self.assertEqual(TrainingRun.objects.count(), 1)

    def test_it_enforces_every_fields_range(self):
        self._ready()
        other = Project.objects.create(owner=self.bob, name="Bob's")
        foreign_version = DatasetVersion.objects.create(
            project=other, name="V001", train_ratio=0.8, seed=1
        )
        cases = [
            ("train_ratio", "-0.1"),
            ("train_ratio", "1.1"),
            ("train_ratio", "many"),
            ("max_minutes", "5"),
            ("max_minutes", "6001"),
            ("preference", "fastest"),
            ("flavor", "tpu"),
            ("incremental_from", "999"),
            ("dataset_version", str(foreign_version.pk)),
            ("dataset_version_name", "no spaces allowed"),
        ]
        for field, value in cases:
            with self.subTest(field=field, value=value):
                response = self.client.post(self.url, {**VALID, field: value})
                self.assertEqual(response.status_code, 200)
                self.assertTrue(response.context["form"].errors.get(field), field)
        self.assertFalse(TrainingRun.objects.exists())

    def test_it_lists_finished_versions_by_precision_to_start_from(self):
        self._ready()
        with queued_only():
            low = start_training(self.project, user=self.alice)
            high = start_training(self.project, user=self.alice)
            queued = start_training(self.project, user=self.alice)
        TrainingRun.objects.filter(pk=low.pk).update(
            status="succeeded", precision=0.81, model_file="projects/x/low.pt"
        )
        TrainingRun.objects.filter(pk=high.pk).update(
            status="stopped", precision=0.93, model_file="projects/x/high.pt"
        )

        response = self.client.get(self.url)

        choices = list(response.context["form"].fields["incremental_from"].choices)
        labels = [str(label) for _, label in choices]
        self.assertEqual(len(labels), 3)
        self.assertTrue(labels[1].startswith("V002: precision 93.0%"))
        self.assertTrue(labels[2].startswith("V001: precision 81.0%"))
        self.assertNotIn(queued.version, " ".join(labels))

    def test_it_answers_404_for_another_users_project(self):
        self.client.force_login(self.bob)
        self.assertEqual(self.client.get(self.url).status_code, 404)
        self.assertEqual(self.client.post(self.url, VALID).status_code, 404)


class RunPageTests(BaseTestCase):
    def setUp(self):
        super().setUp()
        import_photos(self.project, "ants", 6)
        import_photos(self.project, "bees", 6)

    def _queued_run(self):
        with queued_only():
            return start_training(self.project, user=self.alice, train_ratio=0.67)

    def test_it_polls_while_the_run_is_active(self):
        run = self._queued_run()
        status_url = reverse("training:run_status", args=[self.project.pk, run.pk])

        response = self.client.get(run.get_absolute_url())

        self.assertContains(response, f'hx-get="{status_url}"')
        self.assertContains(response, 'hx-trigger="every 1s"')
        self.assertContains(response, "Cancel</button>")
        self.assertContains(response, "Waiting for the training worker")

    def test_it_stops_polling_and_links_the_metrics_when_the_run_ends(self):
        run = start_training(self.project, user=self.alice, train_ratio=0.67)
        status_url = reverse("training:run_status", args=[self.project.pk, run.pk])

        response = self.client.get(status_url, headers={"HX-Request": "true"})

        self.assertContains(response, "Succeeded")
        self.assertNotContains(response, "hx-trigger")
        self.assertNotContains(response, "Cancel</button>")
        self.assertContains(response, "Saved the model")
        self.assertContains(response, 'id="run-progress">100%')
        metrics_url = reverse("training:metrics", args=[self.project.pk, run.pk])
        self.assertContains(response, metrics_url)
        # The poll that sees the end moves the watcher on to the metrics page...
        self.assertContains(response, 'getElementById("to-metrics").click()')

        # ...and so does the page of a run that ended before it was shown...
        followed = self.client.get(f"{run.get_absolute_url()}?follow=1")
        self.assertContains(followed, 'getElementById("to-metrics").click()')

        # ...but a later visit to the finished run's page stays there.
        page = self.client.get(run.get_absolute_url())
        self.assertContains(page, metrics_url)
        self.assertNotContains(page, 'getElementById("to-metrics").click()')

    def test_it_shows_live_figures_of_a_running_run(self):
        run = self._queued_run()
        now = timezone.now()
        TrainingRun.objects.filter(pk=run.pk).update(
            status="running",
            started_at=now - timedelta(seconds=30),
            heartbeat_at=now,
            phase="Training the classifier",
            progress=0.5,
            epoch=7,
            epochs_total=100,
            loss=0.1234,
            val_accuracy=0.9,
        )

        response = self.client.get(
            reverse("training:run_status", args=[self.project.pk, run.pk])
        )

        self.assertContains(response, "Training the classifier")
        self.assertContains(response, "7 of at most 100")
        self.assertContains(response, "0.1234")
        self.assertContains(response, 'id="run-val-accuracy">90%')
        self.assertContains(response, 'id="run-elapsed">30 s')
        self.assertContains(response, 'id="run-remaining">30 s')
        self.assertContains(response, 'hx-trigger="every 1s"')

    def test_it_cancels_a_queued_run(self):
        run = self._queued_run()
        url = reverse("training:run_cancel", args=[self.project.pk, run.pk])

        response = self.client.post(url, headers={"HX-Request": "true"})

        run.refresh_from_db()
        self.assertEqual(run.status, TrainingRun.Status.CANCELLED)
        self.assertContains(response, "Cancelled before it started.")
        self.assertNotContains(response, "hx-trigger")

    def test_it_marks_a_run_whose_worker_died_failed_when_polled(self):
        run = self._queued_run()
        old = timezone.now() - timedelta(
            seconds=settings.TRAINING_HEARTBEAT_TIMEOUT + 1
        )
        TrainingRun.objects.filter(pk=run.pk).update(
            status="running", started_at=old, heartbeat_at=old
        )

        response = self.client.get(
            reverse("training:run_status", args=[self.project.pk, run.pk])
        )

        self.assertContains(response, "Failed")
        self.assertContains(response, "The training worker stopped unexpectedly")
        self.assertNotContains(response, "hx-trigger")

    def test_it_says_why_a_run_failed(self):
        run = self._queued_run()
        TrainingRun.objects.filter(pk=run.pk).update(
            status="failed", status_message="Image x.jpg could not be read: damaged."
        )
        response = self.client.get(run.get_absolute_url())
        self.assertContains(response, "Image x.jpg could not be read: damaged.")

    def test_it_answers_404_for_another_users_run(self):
        run = self._queued_run()
        self.client.force_login(self.bob)
        for name in ("training:run", "training:run_status", "training:run_cancel"):
            url = reverse(name, args=[self.project.pk, run.pk])
            response = (
                self.client.post(url) if "cancel" in name else self.client.get(url)
            )
            self.assertEqual(response.status_code, 404, name)
        run.refresh_from_db()
        self.assertEqual(run.status, TrainingRun.Status.QUEUED)


class RunDeletePageTests(BaseTestCase):
    def setUp(self):
        super().setUp()
        self.run = make_run(self.project)
        storage.write_file(self.run.model_file, b"model")
        self.follower = make_run(
            self.project,
            version="V002",
            incremental_from=self.run,
            incremental_from_version="V001",
        )
        self.service = Service.objects.create(
            project=self.project, training_run=self.run, status="running"
        )
        self.url = reverse("training:run_delete", args=[self.project.pk, self.run.pk])

    def test_it_asks_for_confirmation_and_says_what_goes(self):
        response = self.client.get(self.url)

        self.assertContains(response, "Delete training version V001?")
        self.assertContains(response, "its service is stopped and removed")
        self.assertContains(
            response,
            "Training version V002 was trained incrementally from it and keeps its "
            "own model.",
        )
        self.assertContains(response, '<button type="submit" class="danger">')
        self.assertTrue(TrainingRun.objects.filter(pk=self.run.pk).exists())

    def test_it_deletes_the_version_its_service_and_its_model_file(self):
        with self.captureOnCommitCallbacks(execute=True):
            response = self.client.post(self.url, follow=True)

        self.assertRedirects(
            response, reverse("training:dashboard", args=[self.project.pk])
        )
        self.assertContains(response, "Training version V001 deleted.")
        self.assertFalse(TrainingRun.objects.filter(pk=self.run.pk).exists())
        self.assertFalse(Service.objects.exists())
        self.assertFalse(storage.media_path(self.run.model_file).exists())
        self.assertContains(response, "from V001 (deleted)")

    def test_it_refuses_a_version_still_training(self):
        now = timezone.now()
        TrainingRun.objects.filter(pk=self.run.pk).update(
            status="running", started_at=now, heartbeat_at=now
        )
        message = "Training version V001 is still training; cancel it first"

        page = self.client.get(self.url)
        self.assertContains(page, message)
        self.assertNotContains(page, '<button type="submit" class="danger">')

        response = self.client.post(self.url)
        self.assertContains(response, message, status_code=409)
        self.assertTrue(TrainingRun.objects.filter(pk=self.run.pk).exists())
        self.assertEqual(Service.objects.get().status, Service.Status.RUNNING)
        self.assertTrue(storage.media_path(self.run.model_file).exists())

    def test_it_answers_404_for_another_users_version(self):
        self.client.force_login(self.bob)
        self.assertEqual(self.client.get(self.url).status_code, 404)
        self.assertEqual(self.client.post(self.url).status_code, 404)
        self.assertTrue(TrainingRun.objects.filter(pk=self.run.pk).exists())
