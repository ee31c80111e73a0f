import io
import struct
import zlib
from datetime import timedelta

from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from django.utils import timezone
from PIL import Image
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from projects import storage
from tests.base import real_photos
from tests.trained import TrainedModelTestCase
from training import deployment
from training.models import Prediction, Service


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG file whose header declares a huge picture."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


def jpeg_bytes(image: Image.Image, **kw) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90, **kw)
    return out.getvalue()


class PredictionApiTests(TrainedModelTestCase):
    def setUp(self):
        super().setUp()
        self.service = deployment.deploy(self.training_run)
        self.url = f"/api/services/{self.service.pk}/predict"
        self.api = APIClient()
        self.api.force_authenticate(self.alice)
        self.ant = real_photos("ants", 1, split="val")[0].read_bytes()

    def predict(self, data: bytes, name="photo.jpg", client=None):
        upload = SimpleUploadedFile(name, data, content_type="image/jpeg")
        return (client or self.api).post(
            self.url, {"images": upload}, format="multipart"
        )

    def assert_refused(self, response, status: int, words: str):
        self.assertEqual(response.status_code, status, response.content)
        self.assertIn(words, response.json()["detail"])

    def test_it_answers_in_the_modelarts_shape(self):
        response = self.predict(self.ant)
        self.assertEqual(response.status_code, 200, response.content)
        answer = response.json()

        self.assertEqual(set(answer), {"predicted_label", "scores"})
        labels = [label for label, _ in answer["scores"]]
        probabilities = [p for _, p in answer["scores"]]
        self.assertEqual(sorted(labels), ["ants", "bees"])
        self.assertEqual(answer["predicted_label"], labels[0])
        self.assertEqual(probabilities, sorted(probabilities, reverse=True))
        self.assertLessEqual(sum(probabilities), 1.0)
        self.assertGreater(sum(probabilities), 0.998)
        for p in probabilities:
            self.assertEqual(round(p, 4), p)

    def test_it_gives_held_out_photos_their_class(self):
        for label in ("ants", "bees"):
            photos = real_photos(label, 5, split="val")
            answers = [self.predict(p.read_bytes()).json() for p in photos]
            right = [a["predicted_label"] for a in answers].count(label)
            self.assertGreaterEqual(right, 4, f"{label}: {answers}")

    def test_it_prepares_photos_exactly_as_training_does(self):
        from training.ml.engine import load_predictor

        predictor = load_predictor(storage.media_path(self.training_run.model_file))
        for path in real_photos("bees", 3, split="val"):
            data = path.read_bytes()
            expected = dict(predictor.predict_bytes([data])[0])
            for label, p in self.predict(data).json()["scores"]:
                self.assertAlmostEqual(p, expected[label], delta=1e-4)

    def test_it_counts_each_prediction_with_its_latency(self):
        for _ in range(3):
            self.assertEqual(self.predict(self.ant).status_code, 200)
        self.predict(b"")  # refused: not counted

        self.service.refresh_from_db()
        self.assertEqual(self.service.prediction_count, 3)
        rows = Prediction.objects.filter(service=self.service)
        self.assertEqual(rows.count(), 3)
        for row in rows:
            self.assertGreater(row.latency_ms, 0)
            self.assertIn(row.predicted_label, ["ants", "bees"])

        detail = self.api.get(f"/api/services/{self.service.pk}").json()
        self.assertEqual(detail["prediction_count"], 3)
        self.assertGreater(detail["latency_p95_ms"], 0)
        self.assertGreaterEqual(detail["latency_p95_ms"], detail["latency_p50_ms"])

    def test_it_accepts_a_token(self):
        token = Token.objects.create(user=self.alice)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        self.assertEqual(self.predict(self.ant, client=client).status_code, 200)

    def test_it_refuses_anonymous_callers(self):
        response = self.predict(self.ant, client=APIClient())
        self.assertIn(response.status_code, (401, 403))
        self.assertEqual(Prediction.objects.count(), 0)

    def test_another_users_service_is_not_found(self):
        token = Token.objects.create(user=self.bob)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        self.assertEqual(self.predict(self.ant, client=client).status_code, 404)
        self.assertEqual(
            client.get(f"/api/services/{self.service.pk}").status_code, 404
        )
        stop = client.post(f"/api/services/{self.service.pk}/stop")
        self.assertEqual(stop.status_code, 404)
        self.assertEqual(client.get("/api/services").json(), [])

    def test_it_refuses_a_request_without_a_file(self):
        response = self.api.post(self.url, {}, format="multipart")
        self.assert_refused(response, 400, "No image was sent")

    def test_it_refuses_a_file_in_another_field(self):
        upload = SimpleUploadedFile("a.jpg", self.ant, content_type="image/jpeg")
        response = self.api.post(self.url, {"image": upload}, format="multipart")
        self.assert_refused(response, 400, "multipart field “images”")

    def test_it_refuses_two_files(self):
        files = [
            SimpleUploadedFile(f"{i}.jpg", self.ant, content_type="image/jpeg")
            for i in range(2)
        ]
        response = self.api.post(self.url, {"images": files}, format="multipart")
        self.assert_refused(response, 400, "one image per request, not 2")

    def test_it_refuses_an_empty_file(self):
        self.assert_refused(self.predict(b""), 400, "The file is empty.")

    def test_it_refuses_a_truncated_jpeg(self):
        response = self.predict(self.ant[: len(self.ant) // 2])
        self.assert_refused(response, 400, "incomplete")

    def test_it_refuses_a_file_that_is_not_an_image(self):
        response = self.predict(b"name,label\nant.jpg,ants\n", name="labels.csv")
        self.assert_refused(response, 400, "This is not an image: it is a text file")

    def test_it_refuses_an_image_with_too_many_pixels(self):
        response = self.predict(png_declaring(10_000, 6_000), name="huge.png")
        self.assert_refused(response, 400, "10000×6000 pixels")

    @override_settings(IMAGE_MAX_BYTES=20_000)
    def test_it_refuses_a_file_over_the_size_limit(self):
        response = self.predict(self.ant)
        self.assert_refused(response, 400, "are refused")

    def test_it_takes_rotated_cmyk_and_transparent_images(self):
        photo = Image.open(io.BytesIO(self.ant)).convert("RGB")
        exif = Image.Exif()
        exif[0x0112] = 6
        rotated = jpeg_bytes(photo.rotate(90, expand=True), exif=exif.tobytes())
        cmyk = jpeg_bytes(photo.convert("CMYK"))
        transparent = io.BytesIO()
        photo.convert("RGBA").save(transparent, "PNG")

        for data in (rotated, cmyk, transparent.getvalue()):
            response = self.predict(data)
            self.assertEqual(response.status_code, 200, response.content)
            self.assertEqual(response.json()["predicted_label"], "ants")

    def test_a_stopped_service_answers_409_and_starts_again(self):
        deployment.stop(self.service, message="Stopped by its owner.")
        response = self.predict(self.ant)
        self.assert_refused(response, 409, "is stopped")

        started = self.api.post(f"/api/services/{self.service.pk}/start")
        self.assertEqual(started.status_code, 200)
        self.assertEqual(started.json()["status"], "running")
        self.assertEqual(self.predict(self.ant).status_code, 200)

    def test_a_deploying_service_answers_503(self):
        Service.objects.filter(pk=self.service.pk).update(
            status=Service.Status.DEPLOYING
        )
        response = self.predict(self.ant)
        self.assert_refused(response, 503, "still deploying")
        self.assertEqual(response["Retry-After"], "5")

    def test_a_failed_service_answers_409_with_its_reason(self):
        Service.objects.filter(pk=self.service.pk).update(
            status=Service.Status.FAILED, status_message="The model file is missing."
        )
        response = self.predict(self.ant)
        self.assert_refused(response, 409, "The model file is missing.")

    def test_an_expired_auto_stop_applies_before_predicting(self):
        deployment.set_auto_stop(self.service, 1)
        Service.objects.filter(pk=self.service.pk).update(
            auto_stop_at=timezone.now() - timedelta(seconds=1)
        )
        response = self.predict(self.ant)
        self.assert_refused(response, 409, "Stopped automatically after 1 hour.")
        self.service.refresh_from_db()
        self.assertEqual(self.service.status, Service.Status.STOPPED)

    def test_a_service_whose_model_vanished_fails_with_a_reason(self):
        from training import serving

        serving.evict(self.service.pk)
        storage.media_path(self.training_run.model_file).unlink()
        response = self.predict(self.ant)
        self.assert_refused(response, 503, "model file")
        self.service.refresh_from_db()
        self.assertEqual(self.service.status, Service.Status.FAILED)

    def test_it_deploys_and_lists_through_the_api(self):
        deployment.delete(self.service)
        response = self.api.post(
            "/api/services",
            {"training_run": self.training_run.pk, "auto_stop_hours": 4},
            format="json",
        )
        self.assertEqual(response.status_code, 201, response.content)
        self.assertEqual(response.json()["status"], "running")
        self.assertEqual(response.json()["auto_stop_hours"], 4)

        listed = self.api.get("/api/services").json()
        self.assertEqual([s["version"] for s in listed], ["V001"])

    def test_a_service_whose_model_is_damaged_fails_with_a_reason(self):
        from training import serving

        serving.evict(self.service.pk)
        storage.media_path(self.training_run.model_file).write_bytes(b"\x80\x02h\x75.")
        message = (
            "The model file of V001 is damaged or was written by an incompatible "
            "version; train the version again."
        )

        response = self.predict(self.ant)

        self.assert_refused(response, 503, message)
        self.service.refresh_from_db()
        self.assertEqual(self.service.status, Service.Status.FAILED)
        self.assertEqual(self.service.status_message, message)

    def test_deploying_a_running_version_changes_the_auto_stop_of_its_service(self):
        url = "/api/services"
        before = timezone.now()
        response = self.api.post(
            url, {"training_run": self.training_run.pk, "auto_stop_hours": 2}
        )

        self.assertEqual(response.status_code, 200, response.content)
        self.assertEqual(response.json()["id"], self.service.pk)
        self.assertEqual(response.json()["status"], "running")
        self.assertEqual(response.json()["auto_stop_hours"], 2)
        self.service.refresh_from_db()
        self.assertGreaterEqual(self.service.auto_stop_at, before + timedelta(hours=2))
        self.assertEqual(Service.objects.count(), 1)

        # Without hours nothing changes; null turns auto-stop off.
        response = self.api.post(url, {"training_run": self.training_run.pk})
        self.assertEqual(response.json()["auto_stop_hours"], 2)
        response = self.api.post(
            url,
            {"training_run": self.training_run.pk, "auto_stop_hours": None},
            format="json",
        )
        self.assertEqual(response.status_code, 200)
        self.assertIsNone(response.json()["auto_stop_hours"])
        self.assertIsNone(response.json()["auto_stop_at"])

    def test_hours_given_while_deploying_count_once_it_runs(self):
        Service.objects.filter(pk=self.service.pk).update(
            status=Service.Status.DEPLOYING
        )
        response = self.api.post(
            "/api/services",
            {"training_run": self.training_run.pk, "auto_stop_hours": 1},
            format="json",
        )
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.json()["status"], "deploying")
        self.assertEqual(response.json()["auto_stop_hours"], 1)

        before = timezone.now()
        deployment.load_service(self.service.pk)

        self.service.refresh_from_db()
        self.assertEqual(self.service.status, Service.Status.RUNNING)
        self.assertGreaterEqual(self.service.auto_stop_at, before + timedelta(hours=1))

    def test_deploying_a_stopped_version_starts_its_service_with_the_hours(self):
        deployment.stop(self.service, message="Stopped by its owner.")

        response = self.api.post(
            "/api/services",
            {"training_run": self.training_run.pk, "auto_stop_hours": 6},
            format="json",
        )

        self.assertEqual(response.status_code, 200, response.content)
        self.assertEqual(response.json()["id"], self.service.pk)
        self.assertEqual(response.json()["status"], "running")
        self.assertEqual(response.json()["auto_stop_hours"], 6)
        self.assertEqual(self.predict(self.ant).status_code, 200)

        # Started again without hours, it keeps its own.
        deployment.stop(self.service)
        response = self.api.post(
            "/api/services", {"training_run": self.training_run.pk}, format="json"
        )
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.json()["auto_stop_hours"], 6)

    def test_it_refuses_bad_hours_without_touching_the_service(self):
        response = self.api.post(
            "/api/services",
            {"training_run": self.training_run.pk, "auto_stop_hours": 25},
            format="json",
        )
        self.assertEqual(response.status_code, 400)
        self.assertIn("auto_stop_hours", response.json())
        self.service.refresh_from_db()
        self.assertIsNone(self.service.auto_stop_hours)
        self.assertEqual(self.service.status, Service.Status.RUNNING)

    def test_it_refuses_to_deploy_another_users_version(self):
        api = APIClient()
        api.force_authenticate(self.bob)
        response = api.post(
            "/api/services", {"training_run": self.training_run.pk}, format="json"
        )
        self.assertEqual(response.status_code, 400)
        self.assertIn("No such training version", str(response.json()))
