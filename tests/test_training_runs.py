import os
import subprocess
import sys
from datetime import timedelta
from unittest import mock

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import OrmQ, Task

from projects import storage
from projects.models import Project
from tests.base import BaseTestCase
from tests.training_fixtures import import_photos
from training.datasets import publish_dataset_version
from training.models import DatasetVersion, TrainingRun
from training.runs import (
    NotReadyToTrain,
    cancel_training,
    delete_training_run,
    mark_stale_runs_failed,
    propose_training_version,
    start_training,
)
from training.tasks import RunReporter, run_training


def queued_only():
    """Queue tasks in the database as production does, without running them."""
    return mock.patch.object(Conf, "SYNC", False)


class StartTrainingTests(BaseTestCase):
    def setUp(self):
        super().setUp()
        import_photos(self.project, "ants", 6)
        import_photos(self.project, "bees", 6)

    def test_it_trains_a_published_version_in_the_worker_task(self):
        run = start_training(self.project, user=self.alice, train_ratio=0.67)

        run.refresh_from_db()
        self.assertEqual(run.status, TrainingRun.Status.SUCCEEDED, run.status_message)
        self.assertEqual(run.version, "V001")
        self.assertEqual(run.dataset_version.name, "V001")
        self.assertEqual(run.label_names, ["ants", "bees"])
        self.assertEqual(
            run.model_file, storage.model_name_for(self.project.pk, run.pk)
        )
        self.assertTrue(storage.media_path(run.model_file).is_file())
        self.assertEqual(run.accuracy, run.metrics["accuracy"])
        self.assertEqual(run.precision, run.metrics["precision"])
        self.assertEqual(run.progress, 1.0)
        self.assertTrue(run.history)
        self.assertIn("Saved the model", run.log)
        self.assertIsNotNone(run.heartbeat_at)
        self.assertTrue(run.is_usable)
        self.assertTrue(run.task_id)

    def test_it_names_versions_one_after_another(self):
        with queued_only():
            first = start_training(self.project, user=self.alice)
            second = start_training(
                self.project, user=self.alice, dataset_version=first.dataset_version
            )
        self.assertEqual((first.version, second.version), ("V001", "V002"))
        self.assertEqual(propose_training_version(self.project), "V003")
        self.assertEqual(DatasetVersion.objects.filter(project=self.project).count(), 1)

    def test_it_uses_the_dataset_version_name_given(self):
        with queued_only():
            run = start_training(
                self.project, user=self.alice, dataset_version_name="spring"
            )
        self.assertEqual(run.dataset_version.name, "spring")

    def test_it_refuses_a_taken_dataset_version_name(self):
        publish_dataset_version(self.project, name="spring")
        with self.assertRaises(ValidationError) as caught:
            start_training(self.project, user=self.alice, dataset_version_name="spring")
        self.assertIn("dataset_version_name", caught.exception.message_dict)

    def test_it_refuses_a_project_that_is_not_ready_with_the_reasons(self):
        project = Project.objects.create(owner=self.alice, name="Empty")
        import_photos(project, "ants", 3)

        with self.assertRaises(NotReadyToTrain) as caught:
            start_training(project, user=self.alice)

        self.assertEqual(caught.exception.missing, project.readiness().missing)
        self.assertIn("ants needs 2 more images", caught.exception.missing)
        self.assertFalse(TrainingRun.objects.filter(project=project).exists())
        self.assertFalse(DatasetVersion.objects.filter(project=project).exists())

    def test_it_enforces_every_range(self):
        other = Project.objects.create(owner=self.bob, name="Bob's")
        other_version = DatasetVersion.objects.create(
            project=other, name="V001", train_ratio=0.8, seed=1
        )
        cases = [
            ({"train_ratio": -0.1}, "train_ratio"),
            ({"train_ratio": 1.1}, "train_ratio"),
            ({"max_minutes": 5}, "max_minutes"),
            ({"max_minutes": 6001}, "max_minutes"),
            ({"max_minutes": 7.5}, "max_minutes"),
            ({"preference": "fastest"}, "preference"),
            ({"flavor": "tpu"}, "flavor"),
            ({"dataset_version": other_version}, "dataset_version"),
        ]
        for kwargs, field in cases:
            with self.subTest(**{k: str(v) for k, v in kwargs.items()}):
                with self.assertRaises(ValidationError) as caught:
                    start_training(self.project, user=self.alice, **kwargs)
                self.assertIn(field, caught.exception.message_dict)
        self.assertFalse(TrainingRun.objects.exists())

    def test_it_accepts_the_limits_of_every_range(self):
        with queued_only():
            low = start_training(
                self.project, user=self.alice, train_ratio=0.05, max_minutes=6
            )
            high = start_training(
                self.project, user=self.alice, train_ratio=1.0, max_minutes=6000
            )
        self.assertEqual((low.max_minutes, high.max_minutes), (6, 6000))
        self.assertEqual(high.dataset_version.train_ratio, 1.0)

    def test_it_refuses_a_ratio_of_0_that_leaves_nothing_to_train_on(self):
        with self.assertRaises(ValidationError) as caught:
            start_training(self.project, user=self.alice, train_ratio=0.0)
        message = caught.exception.message_dict["dataset_version"][0]
        self.assertIn("training images of fewer than 2 labels", message)
        self.assertFalse(DatasetVersion.objects.filter(project=self.project).exists())

    def test_it_refuses_an_incremental_version_without_a_model(self):
        with queued_only():
            queued = start_training(self.project, user=self.alice)
        with self.assertRaises(ValidationError) as caught:
            start_training(self.project, user=self.alice, incremental_from=queued)
        self.assertIn(
            "no saved model", caught.exception.message_dict["incremental_from"][0]
        )

    def test_it_refuses_another_projects_version_to_start_from(self):
        other = Project.objects.create(owner=self.alice, name="Other")
        import_photos(other, "ants", 5, skip=6)
        import_photos(other, "bees", 5, skip=6)
        with queued_only():
            foreign = start_training(other, user=self.alice)
        with self.assertRaises(ValidationError) as caught:
            start_training(self.project, user=self.alice, incremental_from=foreign)
        self.assertIn(
            "another project", caught.exception.message_dict["incremental_from"][0]
        )

    def test_it_trains_incrementally_with_labels_matched_by_name(self):
        first = start_training(self.project, user=self.alice, train_ratio=0.67)
        first.refresh_from_db()
        # A third label comes in.
        import_photos(self.project, "bees", 5, split="val", as_label="wasps")

        second = start_training(
            self.project,
            user=self.alice,
            incremental_from=first,
            preference="accuracy_first",
        )

        second.refresh_from_db()
        self.assertEqual(
            second.status, TrainingRun.Status.SUCCEEDED, second.status_message
        )
        self.assertEqual(second.label_names, ["ants", "bees", "wasps"])
        self.assertEqual(second.incremental_from, first)
        self.assertEqual(second.metrics["backbone"], "lite0")
        self.assertIn("Incremental training, starting from V001", second.log)
        self.assertIn("kept ants, bees; new wasps; dropped none", second.log)
        self.assertEqual(second.incremental_from_version, "V001")

    def test_it_fails_with_a_reason_when_the_source_model_is_damaged(self):
        first = start_training(self.project, user=self.alice, train_ratio=0.67)
        first.refresh_from_db()
        storage.write_file(first.model_file, b"\x80\x02}q\x00damaged")

        second = start_training(self.project, user=self.alice, incremental_from=first)

        second.refresh_from_db()
        self.assertEqual(second.status, TrainingRun.Status.FAILED)
        self.assertEqual(
            second.status_message,
            "The model file of V001 is damaged or was written by an incompatible "
            "version, so incremental training cannot start from it; start from "
            "another version or from the pretrained network.",
        )

    def test_it_refuses_to_delete_a_version_another_trains_from(self):
        source = start_training(self.project, user=self.alice, train_ratio=0.67)
        source.refresh_from_db()
        with queued_only():
            start_training(self.project, user=self.alice, incremental_from=source)

        with self.assertRaises(ValidationError) as caught:
            delete_training_run(source)

        self.assertEqual(
            caught.exception.messages,
            [
                "Training version V001 cannot be deleted while V002 trains "
                "incrementally from it; wait for that training to end or cancel it."
            ],
        )
        self.assertTrue(TrainingRun.objects.filter(pk=source.pk).exists())
        self.assertTrue(storage.media_path(source.model_file).is_file())


class IncrementalSplitTests(BaseTestCase):
    """An incremental run never validates on images its source trained on."""

    def setUp(self):
        super().setUp()
        import_photos(self.project, "ants", 6)
        import_photos(self.project, "bees", 6)
        self.first_data = publish_dataset_version(self.project, train_ratio=0.5, seed=1)
        self.second_data = publish_dataset_version(
            self.project, train_ratio=0.5, seed=2
        )
        # Training version V001, trained on dataset version V002; its model
        # file is never read here, as nothing is trained.
        with queued_only():
            self.source = start_training(
                self.project, user=self.alice, dataset_version=self.second_data
            )
        TrainingRun.objects.filter(pk=self.source.pk).update(
            status=TrainingRun.Status.SUCCEEDED,
            model_file=storage.model_name_for(self.project.pk, self.source.pk),
        )
        self.source.refresh_from_db()

    def usages(self, version) -> dict[str, str]:
        return dict(version.items.values_list("sha256", "usage"))

    def test_it_publishes_with_the_split_of_the_sources_dataset_version(self):
        import_photos(self.project, "ants", 4, skip=6)
        import_photos(self.project, "bees", 4, skip=6)

        with queued_only():
            run = start_training(
                self.project,
                user=self.alice,
                train_ratio=0.5,
                incremental_from=self.source,
            )

        published = run.dataset_version
        self.assertEqual(published.name, "V003")
        self.assertEqual(published.image_count, 20)
        old, new = self.usages(self.second_data), self.usages(published)
        self.assertEqual({sha: new[sha] for sha in old}, old)
        self.assertEqual(
            published.label_counts,
            {"ants": {"train": 5, "eval": 5}, "bees": {"train": 5, "eval": 5}},
        )

    def test_it_refuses_a_dataset_version_whose_validation_images_were_trained_on(
        self,
    ):
        trained_on = {
            sha
            for sha, usage in self.usages(self.second_data).items()
            if usage == "TRAIN"
        }
        overlap = sum(
            1
            for sha, usage in self.usages(self.first_data).items()
            if usage == "EVAL" and sha in trained_on
        )
        self.assertGreater(overlap, 1)

        with self.assertRaises(ValidationError) as caught:
            start_training(
                self.project,
                user=self.alice,
                dataset_version=self.first_data,
                incremental_from=self.source,
            )

        self.assertEqual(
            caught.exception.message_dict["incremental_from"],
            [
                f"{overlap} validation images of dataset version V001 were training "
                "images of V002, which training version V001 learned from, so the "
                "figures of this training would be too optimistic. Publish a new "
                "dataset version (it keeps the split of V002) or train without "
                "incremental training."
            ],
        )
        self.assertEqual(self.project.training_runs.count(), 1)

    def test_it_trains_incrementally_on_the_sources_own_dataset_version(self):
        with queued_only():
            run = start_training(
                self.project,
                user=self.alice,
                dataset_version=self.second_data,
                incremental_from=self.source,
            )
        self.assertEqual(run.dataset_version, self.second_data)

    def test_it_trains_incrementally_on_a_version_that_kept_the_split(self):
        import_photos(self.project, "ants", 2, skip=6)
        kept = publish_dataset_version(
            self.project, train_ratio=0.8, keep_split_of=self.second_data
        )
        with queued_only():
            run = start_training(
                self.project,
                user=self.alice,
                dataset_version=kept,
                incremental_from=self.source,
            )
        self.assertEqual(run.dataset_version, kept)

    def test_it_trains_without_incremental_training_on_any_version(self):
        with queued_only():
            run = start_training(
                self.project, user=self.alice, dataset_version=self.first_data
            )
        self.assertEqual(run.dataset_version, self.first_data)


class RunLifecycleTests(BaseTestCase):
    def setUp(self):
        super().setUp()
        import_photos(self.project, "ants", 6)
        import_photos(self.project, "bees", 6)
        with queued_only():
            self.run = start_training(self.project, user=self.alice, train_ratio=0.67)

    def test_it_queues_the_worker_task(self):
        self.assertEqual(self.run.status, TrainingRun.Status.QUEUED)
        self.assertTrue(self.run.task_id)
        self.assertEqual(OrmQ.objects.count(), 1)

    def test_it_cancels_a_queued_run_at_once(self):
        run = cancel_training(self.run)

        self.assertEqual(run.status, TrainingRun.Status.CANCELLED)
        self.assertIsNotNone(run.finished_at)
        # The worker then skips it.
        self.assertEqual(run_training(run.pk), "skipped")
        run.refresh_from_db()
        self.assertEqual(run.status, TrainingRun.Status.CANCELLED)
        self.assertEqual(run.model_file, "")

    def test_it_cancels_a_running_run_at_its_next_check(self):
        # The user pressed Cancel just as the worker took the run.
        TrainingRun.objects.filter(pk=self.run.pk).update(cancel_requested=True)

        self.assertEqual(run_training(self.run.pk), TrainingRun.Status.CANCELLED)

        self.run.refresh_from_db()
        self.assertEqual(self.run.status, TrainingRun.Status.CANCELLED)
        self.assertEqual(self.run.model_file, "")
        path = storage.media_path(storage.model_name_for(self.project.pk, self.run.pk))
        self.assertFalse(path.exists())

    def test_it_stops_training_a_run_deleted_meanwhile(self):
        self.assertFalse(RunReporter(self.run).should_cancel())

        # Deleting the project takes its runs along while the worker trains.
        TrainingRun.objects.filter(pk=self.run.pk).delete()

        self.assertTrue(RunReporter(self.run).should_cancel())

    def test_it_refuses_to_delete_a_queued_version(self):
        with self.assertRaises(ValidationError) as caught:
            delete_training_run(self.run)

        self.assertEqual(
            caught.exception.messages,
            ["Training version V001 is still queued; cancel it first, then delete it."],
        )
        self.run.refresh_from_db()
        self.assertEqual(self.run.status, TrainingRun.Status.QUEUED)

    def test_it_deletes_a_cancelled_version_and_keeps_its_dataset_version(self):
        cancel_training(self.run)

        delete_training_run(self.run)

        self.assertFalse(TrainingRun.objects.exists())
        self.assertEqual(DatasetVersion.objects.count(), 1)

    def test_it_marks_cancel_requested_on_a_running_run(self):
        TrainingRun.objects.filter(pk=self.run.pk).update(
            status=TrainingRun.Status.RUNNING, heartbeat_at=timezone.now()
        )
        run = cancel_training(self.run)
        self.assertEqual(run.status, TrainingRun.Status.RUNNING)
        self.assertTrue(run.cancel_requested)

    def test_it_stops_at_the_time_limit_and_keeps_the_model(self):
        # Below the form's minimum, so the limit is reached at once.
        TrainingRun.objects.filter(pk=self.run.pk).update(max_minutes=0)

        run_training(self.run.pk)

        self.run.refresh_from_db()
        self.assertEqual(self.run.status, TrainingRun.Status.STOPPED)
        self.assertEqual(
            self.run.status_message,
            "Stopped by the time limit of 0 minutes; the best model so far was saved.",
        )
        self.assertTrue(self.run.is_usable)
        self.assertTrue(storage.media_path(self.run.model_file).is_file())
        self.assertTrue(self.run.metrics["stopped_by_time_limit"])

    def test_it_marks_a_run_whose_worker_died_as_failed(self):
        old = timezone.now() - timedelta(
            seconds=settings.TRAINING_HEARTBEAT_TIMEOUT + 5
        )
        TrainingRun.objects.filter(pk=self.run.pk).update(
            status=TrainingRun.Status.RUNNING, started_at=old, heartbeat_at=old
        )

        self.assertEqual(mark_stale_runs_failed(), 1)

        self.run.refresh_from_db()
        self.assertEqual(self.run.status, TrainingRun.Status.FAILED)
        self.assertEqual(
            self.run.status_message,
            "The training worker stopped unexpectedly (no sign of life for over a "
            "minute). Start the training again.",
        )
        self.assertIsNotNone(self.run.finished_at)

    def test_it_leaves_a_run_with_a_recent_heartbeat_running(self):
        TrainingRun.objects.filter(pk=self.run.pk).update(
            status=TrainingRun.Status.RUNNING,
            started_at=timezone.now() - timedelta(hours=2),
            heartbeat_at=timezone.now() - timedelta(seconds=5),
        )
        self.assertEqual(mark_stale_runs_failed(), 0)
        self.run.refresh_from_db()
        self.assertEqual(self.run.status, TrainingRun.Status.RUNNING)

    def test_it_marks_a_queued_run_whose_task_failed_as_failed(self):
        now = timezone.now()
        Task.objects.create(
            id=self.run.task_id,
            name="training",
            func="training.tasks.run_training",
            started=now,
            stopped=now,
            success=False,
        )

        self.assertEqual(mark_stale_runs_failed(), 1)

        self.run.refresh_from_db()
        self.assertEqual(self.run.status, TrainingRun.Status.FAILED)
        self.assertIn("Start the training again", self.run.status_message)

    def test_it_fails_with_the_name_of_an_unreadable_image(self):
        item = self.run.dataset_version.items.order_by("id").first()
        storage.media_path(item.file).unlink()

        self.assertEqual(run_training(self.run.pk), TrainingRun.Status.FAILED)

        self.run.refresh_from_db()
        self.assertEqual(
            self.run.status_message,
            f"Image {item.original_name} could not be read: the file is missing "
            "from the studio's storage",
        )
        self.assertIn("Failed: Image", self.run.log)

    def test_it_does_not_train_a_run_twice(self):
        self.assertEqual(run_training(self.run.pk), TrainingRun.Status.SUCCEEDED)
        self.assertEqual(run_training(self.run.pk), "skipped")


class StartupTests(BaseTestCase):
    def test_it_does_not_import_torch_when_django_starts(self):
        code = (
            "import django; django.setup(); import exeml_site.urls; "
            "from django.urls import get_resolver; get_resolver().url_patterns; "
            "import training.views.runs, training.views.runs_api, training.forms, "
            "training.serializers_runs, training.tasks, training.runs, "
            "training.management.commands.train; "
            "import sys; print('torch' in sys.modules)"
        )
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "exeml_site.settings"}
        env["DATABASE_URL"] = ""
        result = subprocess.run(
            [sys.executable, "-c", code],
            cwd=settings.BASE_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout.strip(), "False")
