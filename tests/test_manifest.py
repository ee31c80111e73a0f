import hashlib
import io
import json
import zipfile
from datetime import UTC, datetime

from django.core.exceptions import ValidationError
from django.utils import timezone

from projects import storage
from projects.importing import import_file
from projects.models import Image, Label, Project
from tests.base import BaseTestCase, real_photos
from tests.image_fixtures import add_image, add_images, jpeg_bytes
from training.datasets import export_class_folders, publish_dataset_version
from training.manifest import (
    build_manifest,
    export_modelarts_zip,
    import_manifest_zip,
    parse_manifest,
)
from training.models import DatasetVersion, DatasetVersionItem


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
        self.assertEqual(
            parsed.message, "A label name has at most 32 characters (this one has 33)."
        )

    def test_it_refuses_a_label_that_would_escape_its_export_folder(self):
        (parsed,) = parse_manifest(line("a.jpg", label="../../bees"))
        self.assertEqual(parsed.status, "error")
        self.assertIn("A label name cannot contain “/” (“../../bees”)", parsed.message)

    def test_it_cleans_whitespace_in_a_label_like_everywhere_else(self):
        (parsed,) = parse_manifest(line("a.jpg", label="  spaced \t  out "))
        self.assertEqual((parsed.status, parsed.label), ("ok", "spaced out"))

    def test_it_takes_labels_differing_only_in_case_as_one(self):
        annotation = [{"name": "Été"}, {"name": "ÉTÉ"}, {"name": "été"}]
        (parsed,) = parse_manifest(line("a.jpg", annotation=annotation))
        self.assertEqual((parsed.status, parsed.label), ("ok", "Été"))

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

    def test_it_imports_nothing_when_an_image_file_is_refused(self):
        files = {
            "data.manifest": "\n".join(
                [line("good.jpg"), line("broken.jpg", label="bees")]
            ),
            "good.jpg": jpeg_bytes(960),
            "broken.jpg": jpeg_bytes(961)[:200],
        }
        report = import_manifest_zip(self.project, make_zip(files))

        self.assertIsNone(report.version)
        self.assertEqual(
            [(p.number, p.message) for p in report.problems],
            [(2, "The JPEG file is damaged or incomplete: its header cannot be read.")],
        )
        self.assertEqual(
            report.lines[0].message,
            "Usable, but nothing was imported because of the lines with a problem.",
        )
        self.assertEqual(report.imported, 0)
        self.assertIn("Nothing was imported: 1 of 2 lines", report.summary)
        self.assertNothingImported()
        self.assertFalse(Label.objects.exists())

        # Fixed and imported again: the version is made.
        files["broken.jpg"] = jpeg_bytes(961)
        report = import_manifest_zip(self.project, make_zip(files))
        self.assertEqual((report.imported, report.duplicates), (2, 0))
        self.assertEqual(report.version.image_count, 2)


class ManifestImportExistingImageTests(BaseTestCase):
    """A manifest that lists images the project already holds, some of them
    in the trash: they change only when the whole import succeeds."""

    def setUp(self):
        super().setUp()
        self.kept = add_image(self.project, "ants", name="kept.jpg")
        self.trashed = add_image(self.project, "ants", name="trashed.jpg")
        Image.objects.filter(pk=self.trashed.pk).update(trashed_at=timezone.now())

    def stored(self, image) -> bytes:
        return storage.media_path(image.file).read_bytes()

    def assertExistingUnchanged(self):
        self.kept.refresh_from_db()
        self.trashed.refresh_from_db()
        self.assertEqual(self.kept.label.name, "ants")
        self.assertIsNotNone(self.trashed.trashed_at)
        self.assertEqual(self.trashed.label.name, "ants")
        self.assertEqual(
            list(self.project.labels.values_list("name", flat=True)), ["ants"]
        )
        self.assertFalse(DatasetVersion.objects.exists())

    def test_it_changes_nothing_when_a_later_file_is_not_an_image(self):
        files = {
            "data.manifest": "\n".join(
                [line("a.jpg", label="newlabel"), line("b.jpg", label="newlabel")]
            ),
            "a.jpg": self.stored(self.trashed),
            "b.jpg": b"just some text, not a picture",
        }
        report = import_manifest_zip(self.project, make_zip(files), user=self.alice)

        self.assertIsNone(report.version)
        self.assertEqual(
            [(p.number, p.message) for p in report.problems],
            [(2, "This is not an image: it is a text file.")],
        )
        self.assertEqual(report.lines[0].status, "ok")
        self.assertNotEqual(report.lines[0].message, "")
        self.assertIn("Nothing was imported: 1 of 2 lines", report.summary)
        self.assertExistingUnchanged()
        self.assertEqual(Image.objects.filter(project=self.project).count(), 2)

    def test_it_restores_and_relabels_existing_images_and_says_so(self):
        new = jpeg_bytes(970)
        files = {
            "data.manifest": "\n".join(
                [
                    line("a.jpg", label="bees"),
                    line("b.jpg", label="Ants"),
                    line("c.jpg", "EVAL", label="bees"),
                ]
            ),
            "a.jpg": self.stored(self.trashed),
            "b.jpg": self.stored(self.kept),
            "c.jpg": new,
        }
        report = import_manifest_zip(self.project, make_zip(files), user=self.alice)

        self.assertEqual(report.problems, [])
        self.assertEqual(
            [(entry.status, entry.message) for entry in report.lines],
            [
                (
                    "duplicate",
                    "Was in the trash as trashed.jpg: restored, labeled “bees” "
                    "(it was labeled ants).",
                ),
                ("duplicate", "Already in the project as kept.jpg, labeled “ants”."),
                ("imported", "Imported as a new image, labeled “bees”."),
            ],
        )
        # The restore is a note on the page; the unchanged image is not.
        self.assertEqual([entry.number for entry in report.notable], [1])
        self.trashed.refresh_from_db()
        self.assertIsNone(self.trashed.trashed_at)
        self.assertEqual(self.trashed.label.name, "bees")
        self.assertEqual(self.trashed.labeled_by, self.alice)
        self.assertEqual(
            report.version.label_counts,
            {"ants": {"train": 1, "eval": 0}, "bees": {"train": 1, "eval": 1}},
        )

    def test_it_rewrites_the_files_of_a_trashed_image_when_they_are_gone(self):
        data = self.stored(self.trashed)
        storage.delete_files([self.trashed.file, self.trashed.thumbnail])
        files = {"data.manifest": line("a.jpg", label="ants"), "a.jpg": data}
        report = import_manifest_zip(self.project, make_zip(files))

        self.assertEqual(report.lines[0].status, "duplicate")
        self.assertEqual(self.stored(self.trashed), data)
        self.assertTrue(storage.media_path(self.trashed.thumbnail).exists())
        self.assertEqual(report.version.image_count, 1)

    def test_it_keeps_new_images_but_changes_no_existing_one_when_a_write_fails(self):
        first, second = jpeg_bytes(980), jpeg_bytes(981)
        first_sha = hashlib.sha256(first).hexdigest()
        second_sha = hashlib.sha256(second).hexdigest()
        self.assertNotEqual(first_sha[:2], second_sha[:2])
        # A file where the second image's folder must go: writing it fails
        # after every check passed, as a full or broken disk would.
        folder = storage.media_path(
            storage.original_name_for(self.project.pk, second_sha, "jpg")
        ).parent
        folder.parent.mkdir(parents=True, exist_ok=True)
        folder.write_bytes(b"in the way")

        files = {
            "data.manifest": "\n".join(
                [
                    line("old.jpg", label="newlabel"),
                    line("first.jpg", label="wasps"),
                    line("second.jpg", label="wasps"),
                ]
            ),
            "old.jpg": self.stored(self.trashed),
            "first.jpg": first,
            "second.jpg": second,
        }
        report = import_manifest_zip(self.project, make_zip(files), user=self.alice)

        self.assertIsNone(report.version)
        self.assertEqual(
            [(entry.status, entry.message) for entry in report.lines],
            [
                ("ok", "Not changed: the import stopped at line 3."),
                ("imported", "Imported as a new image, labeled “wasps”."),
                (
                    "error",
                    "An unexpected error stopped this file; it was not imported.",
                ),
            ],
        )
        self.assertIn(
            "No dataset version was created. The 1 new image imported before the "
            "problem stay",
            report.summary,
        )
        self.trashed.refresh_from_db()
        self.assertIsNotNone(self.trashed.trashed_at)
        self.assertEqual(self.trashed.label.name, "ants")
        self.assertFalse(self.project.labels.filter(name="newlabel").exists())
        self.assertEqual(
            list(
                Image.objects.filter(sha256__in=[first_sha, second_sha]).values_list(
                    "sha256", "label__name"
                )
            ),
            [(first_sha, "wasps")],
        )
        self.assertFalse(DatasetVersion.objects.exists())

    def test_it_reports_every_line_with_a_message_in_the_api_form(self):
        files = {
            "data.manifest": "\n".join(
                [
                    line("a.jpg", label="ants"),
                    line("b.jpg", label="ants"),
                    line("c.jpg", label="ants"),
                ]
            ),
            "a.jpg": self.stored(self.kept),
            "b.jpg": jpeg_bytes(990),
            "c.jpg": jpeg_bytes(990),
        }
        report = import_manifest_zip(self.project, make_zip(files))

        lines = report.as_dict()["lines"]
        self.assertEqual(
            [(entry["status"], bool(entry["message"])) for entry in lines],
            [("duplicate", True), ("imported", True), ("skipped", True)],
        )
        self.assertEqual(lines[2]["image_id"], lines[1]["image_id"])


class ClassFolderExportTests(BaseTestCase):
    def test_it_refuses_to_merge_two_labels_into_one_folder(self):
        add_image(self.project, "bees")
        add_image(self.project, "wasps")
        version = publish_dataset_version(self.project, train_ratio=1)
        # A version published before label names had one rule.
        DatasetVersionItem.objects.filter(
            dataset_version=version, label_name="wasps"
        ).update(label_name="../../bees")

        with self.assertRaises(ValidationError) as caught:
            export_class_folders(version)
        self.assertEqual(
            caught.exception.messages,
            [
                "This dataset version cannot be exported as class folders: the "
                "labels “../../bees” and “bees” would share one folder. Rename the "
                "labels, publish a new dataset version and export that one, or "
                "export the ModelArts zip, which keeps every label name as it is."
            ],
        )

    def test_it_refuses_labels_that_differ_only_in_case(self):
        add_image(self.project, "Été")
        add_image(self.project, "ants")
        version = publish_dataset_version(self.project, train_ratio=1)
        DatasetVersionItem.objects.filter(
            dataset_version=version, label_name="ants"
        ).update(label_name="été")

        with self.assertRaises(ValidationError) as caught:
            export_class_folders(version)
        self.assertIn(
            "“Été” and “été” would share one folder", caught.exception.messages[0]
        )
