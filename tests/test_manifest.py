import io
import json
import zipfile
from datetime import UTC, datetime

from django.core.exceptions import ValidationError

from projects import storage
from projects.importing import import_file
from projects.models import Image, Label, Project
from tests.base import BaseTestCase, real_photos
from tests.test_datasets import add_image, add_images, jpeg_bytes
from training.datasets import export_class_folders, publish_dataset_version
from training.manifest import (
    build_manifest,
    export_modelarts_zip,
    import_manifest_zip,
    parse_manifest,
)
from training.models import DatasetVersion


def make_zip(files: dict[str, bytes | str]) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    buffer.seek(0)
    return buffer


def line(source, usage="TRAIN", label="ants", **extra) -> str:
    record = {
        "source": source,
        "usage": usage,
        "id": source,
        "annotation": [
            {
                "type": "modelarts/image_classification",
                "name": label,
                "annotated-by": "human",
                "creation-time": "2024-05-01 10:00:00",
            }
        ],
    }
    record.update(extra)
    return json.dumps(record)


def zip_contents(fileobj) -> dict[str, bytes]:
    with zipfile.ZipFile(fileobj) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


class ManifestExportTests(BaseTestCase):
    def test_it_writes_one_modelarts_object_per_image(self):
        image = add_image(self.project, "ants")
        version = publish_dataset_version(self.project, train_ratio=1)
        DatasetVersion.objects.filter(pk=version.pk).update(
            created_at=datetime(2024, 5, 1, 10, 30, 5, tzinfo=UTC)
        )
        version.refresh_from_db()

        lines = build_manifest(version).splitlines()
        self.assertEqual(len(lines), 1)
        self.assertEqual(
            json.loads(lines[0]),
            {
                "source": f"images/{image.sha256}.jpg",
                "usage": "TRAIN",
                "id": image.sha256,
                "annotation": [
                    {
                        "type": "modelarts/image_classification",
                        "name": "ants",
                        "annotated-by": "human",
                        "creation-time": "2024-05-01 10:30:05",
                    }
                ],
            },
        )

    def test_it_lists_every_item_with_its_usage(self):
        add_images(self.project, {"ants": 5, "bees": 5})
        version = publish_dataset_version(self.project, train_ratio=0.6)
        records = [json.loads(text) for text in build_manifest(version).splitlines()]
        expected = {
            item.sha256: (item.label_name, item.usage) for item in version.items.all()
        }
        self.assertEqual(
            {r["id"]: (r["annotation"][0]["name"], r["usage"]) for r in records},
            expected,
        )

    def test_it_exports_a_modelarts_zip_with_the_manifest_and_images(self):
        images = add_images(self.project, {"ants": 2, "bees": 2})
        version = publish_dataset_version(self.project, name="V001")
        contents = zip_contents(export_modelarts_zip(version))

        self.assertEqual(contents["V001.manifest"].decode(), build_manifest(version))
        for image in images:
            stored = storage.media_path(image.file).read_bytes()
            self.assertEqual(contents[f"images/{image.sha256}.jpg"], stored)
        self.assertEqual(len(contents), 5)

    def test_it_exports_class_folders_and_numbers_clashing_names(self):
        add_image(self.project, "ants", name="a.jpg")
        add_image(self.project, "ants", name="A.jpg")
        add_image(self.project, "bees", name="b.jpg")
        version = publish_dataset_version(self.project, train_ratio=1)
        add_image(self.project, "bees", name="c.jpg")
        evaluation = publish_dataset_version(self.project, train_ratio=0)

        self.assertEqual(
            sorted(zip_contents(export_class_folders(version))),
            ["train/ants/A (2).jpg", "train/ants/a.jpg", "train/bees/b.jpg"],
        )
        self.assertEqual(
            sorted(zip_contents(export_class_folders(evaluation))),
            [
                "val/ants/A (2).jpg",
                "val/ants/a.jpg",
                "val/bees/b.jpg",
                "val/bees/c.jpg",
            ],
        )

    def test_it_keeps_exporting_after_the_images_are_deleted(self):
        image = add_image(self.project, "ants", name="a.jpg")
        version = publish_dataset_version(self.project, train_ratio=1)
        storage.delete_files([image.file, image.thumbnail])
        image.delete()
        self.assertEqual(
            list(zip_contents(export_class_folders(version))), ["train/ants/a.jpg"]
        )


class ManifestRoundTripTests(BaseTestCase):
    def test_it_round_trips_through_a_new_project(self):
        for label in ("ants", "bees"):
            for path in real_photos(label, 6):
                result = import_file(
                    self.project, path.name, path.read_bytes(), label_name=label
                )
                self.assertEqual(result.status, "accepted")
        version = publish_dataset_version(self.project, train_ratio=0.5)

        target = Project.objects.create(owner=self.alice, name="Copy")
        report = import_manifest_zip(
            target, export_modelarts_zip(version), user=self.alice
        )

        self.assertEqual(report.problems, [])
        self.assertEqual(report.imported, 12)
        copy = report.version
        self.assertEqual(copy.name, "V001")
        self.assertEqual(copy.project, target)
        self.assertEqual(copy.label_names, ["ants", "bees"])
        self.assertEqual(copy.label_counts, version.label_counts)
        self.assertEqual(
            dict(copy.items.values_list("sha256", "usage")),
            dict(version.items.values_list("sha256", "usage")),
        )
        self.assertEqual(
            dict(copy.items.values_list("sha256", "label_name")),
            dict(version.items.values_list("sha256", "label_name")),
        )
        self.assertEqual(
            sorted(Label.objects.filter(project=target).values_list("name", flat=True)),
            ["ants", "bees"],
        )
        labeled = dict(
            Image.objects.filter(project=target).values_list("sha256", "label__name")
        )
        self.assertEqual(
            labeled, dict(version.items.values_list("sha256", "label_name"))
        )
        self.assertEqual(copy.created_by, self.alice)

    def test_it_imports_under_a_chosen_name(self):
        add_images(self.project, {"ants": 2})
        version = publish_dataset_version(self.project)
        target = Project.objects.create(owner=self.alice, name="Copy")
        report = import_manifest_zip(
            target, export_modelarts_zip(version), name="imported-1"
        )
        self.assertEqual(report.version.name, "imported-1")

    def test_it_refuses_a_taken_name_before_importing_anything(self):
        add_images(self.project, {"ants": 2})
        version = publish_dataset_version(self.project, name="V001")
        with self.assertRaises(ValidationError):
            import_manifest_zip(
                self.project, export_modelarts_zip(version), name="V001"
            )
        self.assertEqual(DatasetVersion.objects.count(), 1)

    def test_it_reuses_images_already_in_the_project_and_applies_their_label(self):
        ants = add_images(self.project, {"ants": 2})
        version = publish_dataset_version(self.project, train_ratio=1)
        manifest_text = build_manifest(version).replace('"ants"', '"bees"')
        files = {"x.manifest": manifest_text}
        for image in ants:
            files[f"images/{image.sha256}.jpg"] = storage.media_path(
                image.file
            ).read_bytes()

        report = import_manifest_zip(self.project, make_zip(files))

        self.assertEqual(report.imported, 0)
        self.assertEqual(report.duplicates, 2)
        self.assertEqual(report.version.label_counts, {"bees": {"train": 2, "eval": 0}})
        self.assertEqual(
            set(
                Image.objects.filter(project=self.project).values_list(
                    "label__name", flat=True
                )
            ),
            {"bees"},
        )
        self.assertIn("label changed from ants to bees", report.lines[0].message)
        # The first version still says ants.
        self.assertEqual(
            set(version.items.values_list("label_name", flat=True)), {"ants"}
        )

    def test_it_finds_images_next_to_a_manifest_in_a_folder(self):
        files = {
            "export/manifest.json": line("pics/one.jpg") + "\n",
            "export/pics/one.jpg": jpeg_bytes(901),
        }
        report = import_manifest_zip(self.project, make_zip(files))
        self.assertEqual(report.problems, [])
        self.assertEqual(report.version.image_count, 1)

    def test_it_matches_cloud_addresses_to_the_files_in_the_zip(self):
        files = {
            "data.manifest": "\n".join(
                [
                    line("obs://bucket/flowers/ants/one.jpg", "TRAIN", "ants"),
                    line("s3://other/two.jpg", "EVAL", "bees"),
                ]
            ),
            "ants/one.jpg": jpeg_bytes(902),
            "bees/two.jpg": jpeg_bytes(903),
        }
        report = import_manifest_zip(self.project, make_zip(files))
        self.assertEqual(report.problems, [])
        self.assertEqual(
            report.version.label_counts,
            {"ants": {"train": 1, "eval": 0}, "bees": {"train": 0, "eval": 1}},
        )

    def test_it_keeps_a_picture_listed_twice_once(self):
        files = {
            "data.manifest": "\n".join(
                [line("a.jpg", "TRAIN", "ants"), line("b.jpg", "EVAL", "ants")]
            ),
            "a.jpg": jpeg_bytes(904),
            "b.jpg": jpeg_bytes(904),
        }
        report = import_manifest_zip(self.project, make_zip(files))
        self.assertEqual(report.version.image_count, 1)
        self.assertEqual(report.lines[1].status, "skipped")
        self.assertIn("The same picture as line 1", report.lines[1].message)


class ManifestImportProblemTests(BaseTestCase):
    def assertNothingImported(self):
        self.assertFalse(Image.objects.filter(project=self.project).exists())
        self.assertFalse(DatasetVersion.objects.filter(project=self.project).exists())

    def test_it_reports_every_bad_line_and_imports_nothing(self):
        lines = [
            line("good.jpg"),
            "{not json",
            json.dumps({"usage": "TRAIN", "annotation": [{"name": "ants"}]}),
            line("missing.jpg"),
            line("good2.jpg", usage="TEST"),
            json.dumps({"source": "good3.jpg", "usage": "EVAL"}),
            line("good4.jpg", annotation=[{"name": "ants"}, {"name": "bees"}]),
            line(
                "good5.jpg",
                annotation=[{"type": "modelarts/object_detection", "name": "ants"}],
            ),
            "",
            line("good.jpg", usage="EVAL"),
            "[1, 2]",
        ]
        files = {"data.manifest": "\n".join(lines)}
        for name in ("good.jpg", "good2.jpg", "good3.jpg", "good4.jpg", "good5.jpg"):
            files[name] = jpeg_bytes(len(name) + 950)
        report = import_manifest_zip(self.project, make_zip(files))

        self.assertIsNone(report.version)
        problems = {p.number: p.message for p in report.problems}
        self.assertEqual(
            problems,
            {
                2: "Not valid JSON: Expecting property name enclosed in double quotes "
                "(column 2).",
                3: "No “source”: each line must name its image file.",
                4: "“missing.jpg” is not in the zip.",
                5: "Unknown usage “TEST”: use TRAIN or EVAL.",
                6: "No “annotation”: each line needs the image's label.",
                7: "Several labels (ants, bees): an image may have one label.",
                8: "Annotation type “modelarts/object_detection” is not image "
                "classification (modelarts/image_classification).",
                10: "The same file as line 1.",
                11: "Not a JSON object.",
            },
        )
        self.assertIn("Nothing was imported: 9 of 10 lines", report.summary)
        self.assertNothingImported()

    def test_it_accepts_lowercase_usages_and_missing_annotation_types(self):
        record = {"source": "a.jpg", "usage": "eval", "annotation": [{"name": "x"}]}
        (parsed,) = parse_manifest(json.dumps(record))
        self.assertEqual(
            (parsed.status, parsed.usage, parsed.label), ("ok", "EVAL", "x")
        )

    def test_it_refuses_a_missing_usage(self):
        record = {"source": "a.jpg", "annotation": [{"name": "x"}]}
        (parsed,) = parse_manifest(json.dumps(record))
        self.assertEqual(parsed.message, "Unknown usage none: use TRAIN or EVAL.")

    def test_it_refuses_a_label_longer_than_32_characters(self):
        (parsed,) = parse_manifest(line("a.jpg", label="x" * 33))
        self.assertEqual(parsed.status, "error")
        self.assertIn("longer than 32 characters", parsed.message)

    def test_it_refuses_a_file_that_is_not_a_zip(self):
        report = import_manifest_zip(self.project, io.BytesIO(b"plain text"))
        self.assertEqual(report.errors, ["This file is not a zip archive."])
        self.assertNothingImported()

    def test_it_refuses_a_zip_without_a_manifest(self):
        report = import_manifest_zip(self.project, make_zip({"a.jpg": jpeg_bytes(1)}))
        self.assertIn("No manifest in the zip", report.errors[0])
        self.assertNothingImported()

    def test_it_refuses_a_zip_with_two_manifests(self):
        files = {"a.manifest": line("x.jpg"), "b.manifest": line("x.jpg")}
        report = import_manifest_zip(self.project, make_zip(files))
        self.assertEqual(
            report.errors,
            [
                "The zip holds several manifests (a.manifest, b.manifest): "
                "keep only one."
            ],
        )

    def test_it_refuses_an_empty_manifest(self):
        report = import_manifest_zip(self.project, make_zip({"a.manifest": "\n\n"}))
        self.assertEqual(report.errors, ["The manifest is empty."])

    def test_it_refuses_a_manifest_that_is_not_utf8(self):
        files = {"a.manifest": line("é.jpg").encode("utf-16")}
        report = import_manifest_zip(self.project, make_zip(files))
        self.assertEqual(report.errors, ["The manifest is not UTF-8 text."])

    def test_it_keeps_good_images_but_creates_no_version_when_one_is_refused(self):
        files = {
            "data.manifest": "\n".join(
                [line("good.jpg"), line("broken.jpg", label="bees")]
            ),
            "good.jpg": jpeg_bytes(960),
            "broken.jpg": jpeg_bytes(961)[:200],
        }
        report = import_manifest_zip(self.project, make_zip(files))

        self.assertIsNone(report.version)
        self.assertEqual([p.number for p in report.problems], [2])
        self.assertEqual(report.imported, 1)
        self.assertIn("No dataset version was created", report.summary)
        self.assertEqual(
            list(Image.objects.filter(project=self.project).values_list("label__name")),
            [("ants",)],
        )
        self.assertFalse(DatasetVersion.objects.exists())

        # Fixed and imported again: the good image is recognised, the version made.
        files["broken.jpg"] = jpeg_bytes(961)
        report = import_manifest_zip(self.project, make_zip(files))
        self.assertEqual((report.imported, report.duplicates), (1, 1))
        self.assertEqual(report.version.image_count, 2)
