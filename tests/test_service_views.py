import base64
import io
import subprocess
import sys
import zipfile
from datetime import timedelta

from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from PIL import Image, ImageChops, ImageStat

from tests.base import BaseTestCase, real_photos
from tests.trained import TrainedModelTestCase, make_run
from training import deployment, serving
from training.ml.preprocess import crop_box
from training.models import Service


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    """How far apart two same-sized photos are, 0 to 255 per channel."""
    return sum(ImageStat.Stat(ImageChops.difference(a, b)).mean) / 3


def zip_of(entries: dict[str, bytes]) -> SimpleUploadedFile:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return SimpleUploadedFile("check.zip", out.getvalue(), "application/zip")


class ServicePagesTests(BaseTestCase):
    """Pages that need no trained model."""

    def setUp(self):
        super().setUp()
        self.run = make_run(self.project)
        self.service = Service.objects.create(
            project=self.project,
            training_run=self.run,
            status=Service.Status.RUNNING,
            started_at=timezone.now(),
        )

    def url(self, name, *args):
        return reverse(f"training:{name}", args=[self.project.pk, *args])

    def test_it_lists_services_with_count_and_latency(self):
        for ms in (10.0, 20.0, 30.0, 40.0):
            deployment.record_prediction(self.service, "ants", 0.9, ms)

        response = self.client.get(self.url("services"))
        self.assertContains(response, "V001")
        self.assertContains(response, '<span class="badge running">Running</span>')
        self.assertContains(response, '<td class="num">4</td>', html=True)
        self.assertContains(response, "25.0 ms")  # p50
        self.assertContains(response, "38.5 ms")  # p95
        self.assertEqual(response.context["section"], "services")

    def test_the_list_takes_the_same_queries_for_more_services(self):
        self.client.get(self.url("services"))  # warm up sessions and caches
        with CaptureQueriesContext(connection) as one:
            self.client.get(self.url("services"))
        for version in ("V002", "V003", "V004"):
            service = Service.objects.create(
                project=self.project,
                training_run=make_run(self.project, version=version),
                status=Service.Status.RUNNING,
            )
            deployment.record_prediction(service, "bees", 0.8, 12.0)
        with self.assertNumQueries(len(one)):
            self.client.get(self.url("services"))

    def test_it_offers_the_versions_not_deployed_yet(self):
        make_run(self.project, version="V002")
        make_run(self.project, version="V003", status="failed", model_file="")
        response = self.client.get(self.url("services"))
        self.assertEqual([r.version for r in response.context["deployable"]], ["V002"])

    def test_the_deploy_form_deploys_the_chosen_version(self):
        chosen = make_run(self.project, version="V002")
        other = make_run(self.project, version="V003")
        self.client.post(self.url("deploy", other.pk), {"run": chosen.pk})
        self.assertEqual(
            list(Service.objects.values_list("training_run__version", flat=True)),
            ["V002", "V001"],
        )

    def test_the_test_page_refuses_a_stopped_service(self):
        deployment.stop(self.service)
        response = self.client.post(
            self.url("service_try", self.service.pk),
            {"images": SimpleUploadedFile("a.jpg", b"whatever")},
        )
        self.assertEqual(response.status_code, 200)
        answer = response.json()
        self.assertEqual((answer["ok"], answer["http_status"]), (False, 409))
        self.assertIn("Start it to predict", answer["detail"])

    def test_it_shows_the_reason_a_deployment_failed(self):
        run = make_run(self.project, version="V002")
        response = self.client.post(self.url("deploy", run.pk))
        service = Service.objects.get(training_run=run)
        self.assertRedirects(response, self.url("service_detail", service.pk))

        self.assertEqual(service.status, Service.Status.FAILED)
        page = self.client.get(self.url("service_detail", service.pk))
        self.assertContains(page, "Deployment failed.")
        self.assertContains(page, "model file of this training version is missing")

    def test_it_refuses_a_custom_auto_stop_over_24_hours(self):
        run = make_run(self.project, version="V002")
        response = self.client.post(
            self.url("deploy", run.pk), {"auto_stop": "custom", "custom_hours": 25}
        )
        self.assertRedirects(
            response, self.url("services"), fetch_redirect_response=False
        )
        self.assertFalse(Service.objects.filter(training_run=run).exists())
        page = self.client.get(self.url("services"))
        self.assertContains(page, "whole number of hours from 1 to 24")

    def test_it_sets_a_custom_auto_stop(self):
        url = self.url("service_auto_stop", self.service.pk)
        self.client.post(url, {"auto_stop": "custom", "custom_hours": 3})
        self.service.refresh_from_db()
        self.assertEqual(self.service.auto_stop_hours, 3)
        left = self.service.auto_stop_at - timezone.now()
        self.assertGreater(left, timedelta(hours=2, minutes=59))

        self.client.post(url, {"auto_stop": ""})
        self.service.refresh_from_db()
        self.assertIsNone(self.service.auto_stop_hours)
        self.assertIsNone(self.service.auto_stop_at)

    def test_opening_the_page_applies_an_expired_auto_stop(self):
        Service.objects.filter(pk=self.service.pk).update(
            auto_stop_hours=6, auto_stop_at=timezone.now() - timedelta(minutes=2)
        )
        response = self.client.get(self.url("service_detail", self.service.pk))
        self.assertContains(response, '<span class="badge stopped">Stopped</span>')
        self.assertContains(response, "Stopped automatically after 6 hours.")

    def test_the_stop_button_stops_the_service(self):
        response = self.client.post(self.url("service_stop", self.service.pk))
        self.assertRedirects(response, self.url("service_detail", self.service.pk))
        self.service.refresh_from_db()
        self.assertEqual(self.service.status, Service.Status.STOPPED)
        self.assertEqual(self.service.status_message, "Stopped by its owner.")

    def test_a_page_polling_a_deploying_service_reloads_when_it_changes(self):
        url = self.url("service_status", self.service.pk)
        response = self.client.get(f"{url}?was=deploying", HTTP_HX_REQUEST="true")
        self.assertEqual(response["HX-Refresh"], "true")

    def test_the_test_panel_updates_the_figures_without_reloading_the_page(self):
        # After a test prediction the panel asks for the status card; a reload
        # would wipe the answer it has just drawn.
        page = self.client.get(self.url("service_detail", self.service.pk))
        status_url = self.url("service_status", self.service.pk) + "?was=running"
        self.assertContains(page, f'data-status-url="{status_url}"')

        response = self.client.get(status_url, HTTP_HX_REQUEST="true")
        self.assertNotIn("HX-Refresh", response)
        self.assertContains(response, 'id="prediction-count"')

    def test_it_deletes_a_service_and_keeps_the_version(self):
        response = self.client.post(self.url("service_delete", self.service.pk))
        self.assertRedirects(response, self.url("services"))
        self.assertFalse(Service.objects.exists())
        self.run.refresh_from_db()

    def test_another_users_service_is_not_found(self):
        self.client.force_login(self.bob)
        for name in ("service_detail", "service_status"):
            self.assertEqual(
                self.client.get(self.url(name, self.service.pk)).status_code, 404
            )
        for name in ("service_stop", "service_start", "service_try", "service_delete"):
            self.assertEqual(
                self.client.post(self.url(name, self.service.pk)).status_code, 404
            )
        self.assertEqual(self.client.get(self.url("services")).status_code, 404)
        self.assertEqual(
            self.client.post(self.url("deploy", self.run.pk)).status_code, 404
        )
        self.assertEqual(
            self.client.get(self.url("model_export", self.run.pk)).status_code, 404
        )
        self.service.refresh_from_db()
        self.assertEqual(self.service.status, Service.Status.RUNNING)

    def test_service_pages_never_import_torch(self):
        script = (
            "import django, sys; django.setup()\n"
            "from django.test import Client\n"
            "from django.urls import reverse\n"
            "import exeml_site.urls, training.deployment, training.serving\n"
            "import training.export, training.views.services_api\n"
            "import training.management.commands.predict\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", script],
            cwd=settings.BASE_DIR,
            capture_output=True,
            text=True,
            env={
                "DJANGO_SETTINGS_MODULE": "exeml_site.settings",
                "PATH": "/usr/bin:/bin",
                "VAR_DIR": str(settings.MEDIA_ROOT),
            },
        )
        self.assertEqual(result.returncode, 0, result.stderr)


class ServiceTestPageTests(TrainedModelTestCase):
    """The test page and the batch test, with a model trained on real photos."""

    def setUp(self):
        super().setUp()
        self.service = deployment.deploy(self.training_run)

    def url(self, name, *args):
        return reverse(f"training:{name}", args=[self.project.pk, *args])

    def test_it_deploys_from_the_metrics_page_with_an_auto_stop(self):
        deployment.delete(self.service)
        response = self.client.post(
            self.url("deploy", self.training_run.pk), {"auto_stop": "2"}
        )
        service = Service.objects.get(training_run=self.training_run)
        self.assertRedirects(
            response,
            self.url("service_detail", service.pk),
            fetch_redirect_response=False,
        )
        self.assertEqual(service.status, Service.Status.RUNNING)
        self.assertEqual(service.auto_stop_hours, 2)

        page = self.client.get(self.url("service_detail", service.pk))
        self.assertContains(page, "is deployed and running")
        self.assertContains(page, 'id="service-test"')
        self.assertContains(page, "js/service_test.js")

    def test_the_test_page_shows_the_photo_upright_with_every_score(self):
        photo = Image.open(real_photos("bees", 1, split="val")[0]).convert("RGB")
        width, height = photo.size
        exif = Image.Exif()
        exif[0x0112] = 6  # stored on its side: turn 90° clockwise to view
        data = io.BytesIO()
        photo.rotate(90, expand=True).save(data, "JPEG", exif=exif.tobytes())

        response = self.client.post(
            self.url("service_try", self.service.pk),
            {"images": SimpleUploadedFile("bee.jpg", data.getvalue())},
        )
        self.assertEqual(response.status_code, 200, response.content)
        answer = response.json()

        self.assertEqual(answer["predicted_label"], "bees")
        self.assertEqual([label for label, _ in answer["all_scores"]][0], "bees")
        self.assertEqual(len(answer["all_scores"]), 2)
        self.assertEqual((answer["width"], answer["height"]), (width, height))
        self.assertIn("turned upright using its EXIF orientation", answer["notes"])
        self.service.refresh_from_db()
        self.assertEqual(self.service.prediction_count, 1)

    def test_the_preview_is_the_central_square_the_model_sees(self):
        photo = Image.open(real_photos("bees", 1, split="val")[0]).convert("RGB")
        data = io.BytesIO()
        photo.save(data, "JPEG", quality=95)
        self.assertNotEqual(photo.width, photo.height)

        response = self.client.post(
            self.url("service_try", self.service.pk),
            {"images": SimpleUploadedFile("bee.jpg", data.getvalue())},
        )
        self.assertEqual(response.status_code, 200, response.content)
        preview_data = response.json()["preview"].removeprefix(
            "data:image/jpeg;base64,"
        )
        preview = Image.open(io.BytesIO(base64.b64decode(preview_data)))

        spec = serving.get_predictor(self.service).spec
        box = crop_box(photo.width, photo.height, spec)
        self.assertEqual(preview.width, preview.height)
        self.assertEqual(preview.width, round(box[2] - box[0]))
        size = preview.size
        crop = photo.resize(size, Image.Resampling.BICUBIC, box=box)
        whole = photo.resize(size, Image.Resampling.BICUBIC)
        self.assertLess(mean_difference(preview, crop), 6)
        self.assertGreater(mean_difference(preview, whole), 20)

    def test_the_test_page_explains_a_bad_file(self):
        response = self.client.post(
            self.url("service_try", self.service.pk),
            {"images": SimpleUploadedFile("notes.txt", b"just some words")},
        )
        # A 200, so the browser logs no network error; the API answers 400.
        self.assertEqual(response.status_code, 200)
        answer = response.json()
        self.assertIs(answer["ok"], False)
        self.assertEqual(answer["http_status"], 400)
        self.assertIn("This is not an image", answer["detail"])

    def test_the_batch_test_reports_accuracy_and_a_confusion_matrix(self):
        entries = {}
        for label in ("ants", "bees"):
            for path in real_photos(label, 4, split="val"):
                entries[f"val/{label}/{path.name}"] = path.read_bytes()
        wasp = real_photos("bees", 5, split="val")[-1].read_bytes()
        entries["wasps/w1.jpg"] = wasp
        entries["bees/broken.jpg"] = b"not a photo"
        entries["loose.jpg"] = wasp
        entries["__MACOSX/._x.jpg"] = b"junk"

        response = self.client.post(
            self.url("service_batch_test", self.service.pk),
            {"archive": zip_of(entries)},
            HTTP_HX_REQUEST="true",
        )
        self.assertEqual(response.status_code, 200, response.content)
        batch = response.context["batch"]
        metrics = batch.metrics

        self.assertEqual(batch.tested, 8)
        self.assertEqual(metrics["labels"], ["ants", "bees"])
        self.assertEqual([sum(row) for row in metrics["confusion_matrix"]], [4, 4])
        self.assertGreaterEqual(metrics["accuracy"], 0.75)
        self.assertEqual(batch.unknown_labels, {"wasps": 1})
        self.assertEqual([name for name, _ in batch.rejected], ["bees/broken.jpg"])
        self.assertEqual(batch.skipped, ["loose.jpg"])
        self.assertContains(response, "wasps (1 photo)")
        self.assertContains(response, f"{metrics['accuracy']:.3f}")

    def test_the_batch_test_refuses_a_file_that_is_not_a_zip(self):
        response = self.client.post(
            self.url("service_batch_test", self.service.pk),
            {"archive": SimpleUploadedFile("a.zip", b"plain text")},
        )
        self.assertContains(response, "not a zip archive", status_code=400)

    def test_the_batch_test_shows_its_error_in_the_panel_with_htmx(self):
        # htmx swaps in only a 2xx answer: a 400 would leave the panel blank.
        response = self.client.post(
            self.url("service_batch_test", self.service.pk),
            {"archive": SimpleUploadedFile("a.zip", b"plain text")},
            HTTP_HX_REQUEST="true",
        )
        self.assertEqual(response.status_code, 200)
        self.assertTemplateUsed(response, "training/service_batch_result.html")
        self.assertTemplateNotUsed(response, "training/service_detail.html")
        self.assertContains(response, 'id="batch-error"')
        self.assertContains(response, "not a zip archive")

    def test_the_batch_test_needs_a_running_service(self):
        deployment.stop(self.service)
        entries = {"ants/a.jpg": real_photos("ants", 1, split="val")[0].read_bytes()}
        response = self.client.post(
            self.url("service_batch_test", self.service.pk),
            {"archive": zip_of(entries)},
        )
        self.assertContains(response, "is stopped", status_code=400)

    def test_stop_frees_the_model_and_start_brings_it_back(self):
        self.client.post(self.url("service_stop", self.service.pk))
        self.assertEqual(serving.loaded_service_ids(), [])
        page = self.client.get(self.url("service_detail", self.service.pk))
        self.assertNotContains(page, 'id="service-test"')

        self.client.post(self.url("service_start", self.service.pk))
        self.service.refresh_from_db()
        self.assertEqual(self.service.status, Service.Status.RUNNING)
        self.assertEqual(serving.loaded_service_ids(), [self.service.pk])
