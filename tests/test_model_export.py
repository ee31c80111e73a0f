import io
import json
import re
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

from django.conf import settings
from django.urls import reverse

from projects import storage
from tests.base import real_photos
from tests.trained import TrainedModelTestCase
from training import export


class ModelExportTests(TrainedModelTestCase):
    def setUp(self):
        super().setUp()
        self.url = reverse(
            "training:model_export", args=[self.project.pk, self.training_run.pk]
        )

    def download(self) -> zipfile.ZipFile:
        response = self.client.get(self.url)
        self.assertEqual(response.status_code, 200)
        self.assertEqual(
            response["Content-Disposition"],
            'attachment; filename="Insects-V001-model.zip"',
        )
        return zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))

    def test_it_packs_the_program_the_description_and_an_example(self):
        archive = self.download()
        self.assertEqual(
            sorted(archive.namelist()),
            ["model.json", "model.pt2", "model.torchscript.pt", "predict.py"],
        )
        description = json.loads(archive.read("model.json"))
        self.assertEqual(description["label_names"], ["ants", "bees"])
        self.assertEqual(description["input"]["shape"], ["N", 3, 224, 224])
        preprocessing = description["preprocessing"]
        self.assertEqual(preprocessing["image_size"], 224)
        self.assertAlmostEqual(preprocessing["crop_fraction"], 224 / 256)
        self.assertEqual(preprocessing["resample"], "bicubic")
        self.assertEqual(preprocessing["normalisation"], "(pixel - 127) / 128")
        self.assertRegex(description["exported_with"], r"^torch \d+\.\d+")

    def test_it_packs_files_everyone_can_read(self):
        archive = self.download()
        modes = {
            entry.filename: stat.filemode(entry.external_attr >> 16)
            for entry in archive.infolist()
        }
        self.assertEqual(
            modes,
            {
                "model.pt2": "-rw-r--r--",
                "model.torchscript.pt": "-rw-r--r--",
                "model.json": "-rw-r--r--",
                "predict.py": "-rw-r--r--",
            },
        )

    def test_the_exported_model_agrees_with_the_studio(self):
        from training.ml.engine import load_predictor

        folder = Path(self.class_media) / "exported"
        self.download().extractall(folder)
        photos = [real_photos(label, 2, split="val")[1] for label in ("ants", "bees")]

        # Run the example exactly as a user would, in a plain Python process.
        result = subprocess.run(
            [sys.executable, str(folder / "predict.py"), *map(str, photos)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        # No deprecation or other warning on the way.
        self.assertEqual(result.stderr, "")
        exported = [json.loads(line) for line in result.stdout.splitlines()]

        predictor = load_predictor(storage.media_path(self.training_run.model_file))
        studio = predictor.predict_bytes([p.read_bytes() for p in photos])
        for outside, inside in zip(exported, studio, strict=True):
            self.assertEqual(outside["predicted_label"], inside[0][0])
            self.assertAlmostEqual(outside["scores"][0][1], inside[0][1], delta=0.02)

    def test_the_readme_example_is_the_one_in_the_zip(self):
        doc = (settings.BASE_DIR / "docs" / "exported-model.md").read_text()
        code = re.search(r"```python\n(.*?)```", doc, re.DOTALL).group(1)
        self.assertEqual(code, export.EXAMPLE)

    def test_another_users_model_is_not_found(self):
        self.client.force_login(self.bob)
        self.assertEqual(self.client.get(self.url).status_code, 404)

    def test_it_says_when_the_model_file_is_damaged(self):
        storage.media_path(self.training_run.model_file).write_bytes(b"\x80\x02h\x75.")

        with self.assertLogs("training.export", "ERROR"):
            response = self.client.get(self.url, follow=True)

        self.assertContains(
            response,
            "The model file of V001 is damaged or was written by an incompatible "
            "version; train the version again.",
        )
