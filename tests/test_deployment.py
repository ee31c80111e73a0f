from datetime import timedelta

from django.core.exceptions import ValidationError
from django.utils import timezone
from django_q.models import Schedule

from projects import storage
from projects.models import Project
from tests.base import BaseTestCase
from tests.trained import TrainedModelTestCase, make_run
from training import deployment, serving
from training.models import Prediction, Service, TrainingRun


class DeploymentRulesTests(BaseTestCase):
    """The lifecycle rules that hold whatever the model is."""

    def test_it_refuses_a_version_without_a_model(self):
        run = make_run(self.project, status=TrainingRun.Status.FAILED, model_file="")
        with self.assertRaisesMessage(ValidationError, "cannot be deployed"):
            deployment.deploy(run)
        self.assertFalse(Service.objects.exists())

    def test_it_refuses_an_auto_stop_outside_1_to_24_hours(self):
        run = make_run(self.project)
        for hours in (0, 25):
            with self.assertRaisesMessage(ValidationError, "from 1 to 24"):
                deployment.deploy(run, auto_stop_hours=hours)
        self.assertFalse(Service.objects.exists())

    def test_it_fails_with_a_reason_when_the_model_file_is_missing(self):
        run = make_run(self.project)
        service = deployment.deploy(run)
        self.assertEqual(service.status, Service.Status.FAILED)
        self.assertIn(
            "model file of this training version is missing", service.status_message
        )
        self.assertEqual(serving.loaded_service_ids(), [])

    def test_it_fails_with_a_reason_when_the_model_file_is_damaged(self):
        run = make_run(self.project)
        # A pickle whose memo lookup fails: torch raises a bare KeyError.
        storage.write_file(run.model_file, b"\x80\x02h\x75\x2b\x6b\x0a.")
        with self.assertLogs("training.serving", "ERROR") as logs:
            service = deployment.deploy(run)
        self.assertEqual(service.status, Service.Status.FAILED)
        self.assertEqual(
            service.status_message,
            "The model file of V001 is damaged or was written by an incompatible "
            "version; train the version again.",
        )
        self.assertIn("Traceback", logs.output[0])
        self.assertEqual(serving.loaded_service_ids(), [])

    def test_it_stops_a_running_service_whose_auto_stop_time_passed(self):
        run = make_run(self.project)
        service = Service.objects.create(
            project=self.project,
            training_run=run,
            status=Service.Status.RUNNING,
            auto_stop_hours=2,
            auto_stop_at=timezone.now() - timedelta(minutes=1),
        )
        deployment.apply_auto_stop(service)
        self.assertEqual(service.status, Service.Status.STOPPED)
        self.assertEqual(service.status_message, "Stopped automatically after 2 hours.")
        self.assertIsNone(service.auto_stop_at)

    def test_it_leaves_a_service_whose_auto_stop_time_is_ahead(self):
        run = make_run(self.project)
        at = timezone.now() + timedelta(minutes=5)
        service = Service.objects.create(
            project=self.project,
            training_run=run,
            status=Service.Status.RUNNING,
            auto_stop_hours=1,
            auto_stop_at=at,
        )
        deployment.apply_auto_stop(service)
        self.assertEqual(service.status, Service.Status.RUNNING)
        self.assertEqual(deployment.stop_expired_services(), 0)

    def test_the_scheduled_function_stops_every_expired_service(self):
        past = timezone.now() - timedelta(seconds=1)
        for version, at in (("V001", past), ("V002", past), ("V003", None)):
            Service.objects.create(
                project=self.project,
                training_run=make_run(self.project, version=version),
                status=Service.Status.RUNNING,
                auto_stop_hours=1 if at else None,
                auto_stop_at=at,
            )
        self.assertEqual(deployment.stop_expired_services(), 2)
        statuses = dict(Service.objects.values_list("training_run__version", "status"))
        self.assertEqual(
            statuses, {"V001": "stopped", "V002": "stopped", "V003": "running"}
        )

    def test_it_registers_the_auto_stop_schedule_once(self):
        run = make_run(self.project)
        service = Service.objects.create(
            project=self.project, training_run=run, status=Service.Status.RUNNING
        )
        deployment.set_auto_stop(service, 4)
        deployment.set_auto_stop(service, 6)
        schedule = Schedule.objects.get(name=deployment.SCHEDULE_NAME)
        self.assertEqual(schedule.func, "training.deployment.stop_expired_services")
        self.assertEqual(service.auto_stop_hours, 6)
        remaining = service.auto_stop_at - timezone.now()
        self.assertGreater(remaining, timedelta(hours=5, minutes=59))
        self.assertLessEqual(remaining, timedelta(hours=6))

    def test_it_computes_p50_and_p95_latency_over_recent_predictions(self):
        run = make_run(self.project)
        service = Service.objects.create(project=self.project, training_run=run)
        other = Service.objects.create(
            project=self.project, training_run=make_run(self.project, version="V002")
        )
        for ms in range(1, 101):
            deployment.record_prediction(service, "ants", 0.9, float(ms))
        stats = deployment.latency_stats([service.pk, other.pk])

        self.assertAlmostEqual(stats[service.pk].p50_ms, 50.5)
        self.assertAlmostEqual(stats[service.pk].p95_ms, 95.05)
        self.assertEqual(stats[service.pk].sample_size, 100)
        self.assertIsNone(stats[other.pk].p50_ms)
        service.refresh_from_db()
        self.assertEqual(service.prediction_count, 100)

    def test_it_keeps_only_the_latest_predictions_for_latency(self):
        run = make_run(self.project)
        service = Service.objects.create(project=self.project, training_run=run)
        Prediction.objects.bulk_create(
            Prediction(service=service, predicted_label="a", confidence=1, latency_ms=1)
            for _ in range(deployment.LATENCY_WINDOW + 200)
        )
        deployment._prune_predictions(service)
        self.assertEqual(service.predictions.count(), deployment.LATENCY_WINDOW)


class ServiceListApiTests(BaseTestCase):
    def setUp(self):
        super().setUp()
        self.service = Service.objects.create(
            project=self.project,
            training_run=make_run(self.project),
            status=Service.Status.STOPPED,
        )

    def test_it_lists_the_services_of_one_project(self):
        listed = self.client.get("/api/services", {"project": self.project.pk})
        self.assertEqual([s["id"] for s in listed.json()], [self.service.pk])

    def test_it_answers_404_for_a_project_that_is_not_mine(self):
        bobs = Project.objects.create(owner=self.bob, name="Bob's")
        for project_id in [bobs.pk, bobs.pk + 1000]:
            with self.subTest(project_id=project_id):
                listed = self.client.get("/api/services", {"project": project_id})
                self.assertEqual(listed.status_code, 404)

    def test_it_refuses_a_project_filter_that_is_not_an_id(self):
        for value in ["²", "99999999999999999999", "9223372036854775808", "0", "x"]:
            with self.subTest(value=value):
                response = self.client.get("/api/services", {"project": value})
                self.assertEqual(response.status_code, 400)
                self.assertEqual(
                    response.json(),
                    {
                        "project": [
                            f"Not a valid project id: “{value}”. An id is a whole "
                            "number from 1 to 9223372036854775807."
                        ]
                    },
                )


class ServiceLifecycleTests(TrainedModelTestCase):
    """Deploy, stop and start a version trained on real photos."""

    def test_it_deploys_a_trained_version_and_keeps_its_model_loaded(self):
        service = deployment.deploy(self.training_run, auto_stop_hours=2)

        self.assertEqual(service.status, Service.Status.RUNNING)
        self.assertEqual(service.status_message, "")
        self.assertIsNotNone(service.started_at)
        self.assertEqual(
            round((service.auto_stop_at - service.started_at).total_seconds()),
            2 * 3600,
        )
        self.assertEqual(serving.loaded_service_ids(), [service.pk])

    def test_it_frees_the_model_when_stopped_and_loads_it_again_on_start(self):
        service = deployment.deploy(self.training_run)
        predictor = serving.get_predictor(service)

        deployment.stop(service, message="Stopped by its owner.")
        self.assertEqual(service.status, Service.Status.STOPPED)
        self.assertIsNotNone(service.stopped_at)
        self.assertEqual(serving.loaded_service_ids(), [])

        service = deployment.start(service)
        self.assertEqual(service.status, Service.Status.RUNNING)
        self.assertIsNot(serving.get_predictor(service), predictor)
        self.assertEqual(
            Service.objects.filter(training_run=self.training_run).count(), 1
        )

    def test_deploying_a_running_version_again_keeps_its_one_service(self):
        first = deployment.deploy(self.training_run)
        second = deployment.deploy(self.training_run)
        self.assertEqual(first.pk, second.pk)
        self.assertEqual(second.status, Service.Status.RUNNING)

    def test_it_loads_the_model_on_first_use_after_a_restart(self):
        service = deployment.deploy(self.training_run)
        # What a fresh web process sees: running in the database, nothing loaded.
        serving.evict(service.pk)
        predictor = serving.get_predictor(service)
        self.assertEqual(list(predictor.label_names), ["ants", "bees"])
        self.assertEqual(serving.loaded_service_ids(), [service.pk])

    def test_a_sweep_frees_models_of_services_stopped_elsewhere(self):
        service = deployment.deploy(self.training_run)
        Service.objects.filter(pk=service.pk).update(status=Service.Status.STOPPED)
        deployment.refresh_services(Service.objects.all())
        self.assertEqual(serving.loaded_service_ids(), [])
