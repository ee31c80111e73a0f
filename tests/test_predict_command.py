import json
from io import StringIO

from django.core.management import CommandError, call_command

from projects import storage
from projects.models import Project
from tests.base import real_photos
from tests.trained import TrainedModelTestCase


class PredictCommandTests(TrainedModelTestCase):
    def predict(self, *args):
        out = StringIO()
        error = None
        try:
            call_command("predict", *args, stdout=out)
        except CommandError as exc:
            error = str(exc)
        lines = [json.loads(line) for line in out.getvalue().splitlines()]
        return lines, error

    def test_it_prints_the_api_answer_for_each_file(self):
        ant = str(real_photos("ants", 1, split="val")[0])
        bee = str(real_photos("bees", 1, split="val")[0])
        lines, error = self.predict(
            "--project", "insects", "--version", "V001", ant, bee
        )

        self.assertIsNone(error)
        self.assertEqual([line["file"] for line in lines], [ant, bee])
        self.assertEqual([line["predicted_label"] for line in lines], ["ants", "bees"])
        for line in lines:
            self.assertEqual(set(line), {"file", "predicted_label", "scores"})
            self.assertEqual(line["scores"][0][0], line["predicted_label"])
            self.assertLessEqual(sum(p for _, p in line["scores"]), 1.0)

    def test_it_reports_bad_files_and_goes_on(self):
        folder = self.class_media
        empty = f"{folder}/empty.jpg"
        text = f"{folder}/notes.jpg"
        open(empty, "wb").close()
        with open(text, "w") as f:
            f.write("not a photo")
        bee = str(real_photos("bees", 1, split="val")[0])

        lines, error = self.predict(
            "--project", "Insects", "--version", "V001",
            empty, f"{folder}/missing.jpg", text, bee,
        )  # fmt: skip

        self.assertEqual(error, "3 of 4 files could not be predicted.")
        self.assertEqual(
            [line.get("error") for line in lines],
            [
                "The file is empty.",
                "No such file.",
                "This is not an image: it is a text file.",
                None,
            ],
        )
        self.assertEqual(lines[3]["predicted_label"], "bees")

    def test_it_needs_the_owner_when_two_users_share_a_project_name(self):
        Project.objects.create(owner=self.bob, name="Insects")
        ant = str(real_photos("ants", 1, split="val")[0])

        _, error = self.predict("--project", "Insects", "--version", "V001", ant)
        self.assertIn("(alice, bob): add --owner USERNAME", error)

        lines, error = self.predict(
            "--project", "Insects", "--owner", "alice", "--version", "1", ant
        )
        self.assertIsNone(error)
        self.assertEqual(lines[0]["predicted_label"], "ants")

    def test_it_names_the_versions_a_project_has(self):
        ant = str(real_photos("ants", 1, split="val")[0])
        _, error = self.predict("--project", "Insects", "--version", "V009", ant)
        self.assertEqual(
            error, "Project 'Insects' has no training version 'V009' (it has V001)."
        )
        _, error = self.predict("--project", "Wasps", "--version", "V001", ant)
        self.assertEqual(error, "There is no project named “Wasps”.")

    def test_it_says_when_the_model_file_is_damaged(self):
        storage.media_path(self.training_run.model_file).write_bytes(b"\x80\x02h\x75.")
        ant = str(real_photos("ants", 1, split="val")[0])

        with self.assertLogs("training.serving", "ERROR"):
            lines, error = self.predict("--project", "Insects", "--version", "1", ant)

        self.assertEqual(lines, [])
        self.assertEqual(
            error,
            "The model file of V001 is damaged or was written by an incompatible "
            "version; train the version again.",
        )
