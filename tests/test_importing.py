import hashlib
import io
import zipfile
from unittest import mock

from django.db import DatabaseError
from django.db.models.query import QuerySet
from django.test import override_settings
from django.utils import timezone
from PIL import Image as PILImage

from projects import storage
from projects.importing import (
    Importer,
    import_file,
    import_zip,
    label_from_folders,
)
from projects.models import Image, Label
from tests.base import BaseTestCase, real_photos


def png_bytes(color=(200, 30, 30), size=(30, 20)) -> bytes:
    out = io.BytesIO()
    PILImage.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


def zip_bytes(members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


class ImportFileTests(BaseTestCase):
    def setUp(self):
        super().setUp()
        self.photo = real_photos("ants", 1)[0]
        self.data = self.photo.read_bytes()

    def test_it_stores_the_original_the_thumbnail_and_the_row(self):
        result = import_file(self.project, "ant.jpg", self.data, user=self.alice)

        self.assertEqual(result.status, "accepted")
        image = Image.objects.get(pk=result.image_id)
        self.assertEqual(image.original_name, "ant.jpg")
        self.assertEqual(image.format, "JPEG")
        self.assertEqual(image.size_bytes, len(self.data))
        self.assertEqual(len(image.sha256), 64)
        self.assertTrue(image.file.endswith(f"{image.sha256}.jpg"))
        self.assertEqual(storage.media_path(image.file).read_bytes(), self.data)

        with PILImage.open(self.photo) as original:
            self.assertEqual((image.width, image.height), original.size)
        with PILImage.open(storage.media_path(image.thumbnail)) as thumb:
            self.assertEqual(thumb.format, "JPEG")
            self.assertEqual(max(thumb.size), 256)

    def test_it_stores_a_png_named_jpg_as_png(self):
        result = import_file(self.project, "photo.jpg", png_bytes())
        image = Image.objects.get(pk=result.image_id)
        self.assertEqual(image.format, "PNG")
        self.assertTrue(image.file.endswith(".png"))
        self.assertEqual(image.original_name, "photo.jpg")

    def test_it_creates_the_label_once_ignoring_case(self):
        first = import_file(
            self.project, "a.png", png_bytes((1, 2, 3)), label_name="Ants"
        )
        second = import_file(
            self.project, "b.png", png_bytes((4, 5, 6)), label_name="ants"
        )

        self.assertEqual(Label.objects.filter(project=self.project).count(), 1)
        self.assertEqual((first.label, second.label), ("Ants", "Ants"))
        image = Image.objects.get(pk=second.image_id)
        self.assertEqual(image.label.name, "Ants")
        self.assertIsNotNone(image.labeled_at)

    def test_it_records_who_labeled_on_import(self):
        result = import_file(
            self.project, "a.png", png_bytes(), label_name="bees", user=self.alice
        )
        self.assertEqual(Image.objects.get(pk=result.image_id).labeled_by, self.alice)

    def test_it_rejects_a_label_longer_than_32_characters(self):
        result = import_file(self.project, "a.png", png_bytes(), label_name="x" * 33)
        self.assertEqual(result.status, "rejected")
        self.assertEqual(
            result.message,
            "Not imported: its label cannot be used. A label name has at most 32 "
            "characters (this one has 33). Rename the folder or choose another "
            "label.",
        )
        self.assertFalse(Image.objects.exists())
        self.assertFalse(Label.objects.exists())

    def test_it_rejects_a_label_that_would_escape_its_export_folder(self):
        result = import_file(
            self.project, "a.png", png_bytes(), label_name="../../bees"
        )
        self.assertEqual(result.status, "rejected")
        self.assertIn("A label name cannot contain “/” (“../../bees”)", result.message)
        self.assertFalse(Image.objects.exists())
        self.assertFalse(Label.objects.exists())

    def test_it_creates_a_non_ascii_label_once_ignoring_case(self):
        names = ["Été", "été", "ÉTÉ", "İstanbul", "istanbul", "ISTANBUL"]
        for n, name in enumerate(names):
            result = import_file(
                self.project, f"{n}.png", png_bytes((n, 2, 3)), label_name=name
            )
            self.assertEqual(result.status, "accepted", name)

        labels = Label.objects.filter(project=self.project).order_by("pk")
        self.assertEqual([label.name for label in labels], ["Été", "İstanbul"])
        self.assertEqual(
            [label.images.count() for label in labels], [3, 3], "images per label"
        )

    def test_it_reports_a_duplicate_naming_the_existing_image(self):
        first = import_file(self.project, "ant.jpg", self.data)
        second = import_file(self.project, "copy.jpg", self.data)

        self.assertEqual(second.status, "duplicate")
        self.assertEqual(second.duplicate_of_id, first.image_id)
        self.assertEqual(second.message, "Already in the project as ant.jpg.")
        self.assertEqual(Image.objects.count(), 1)

    def test_it_keeps_the_same_file_apart_in_two_projects(self):
        other = self.project.__class__.objects.create(owner=self.alice, name="Other")
        import_file(self.project, "ant.jpg", self.data)
        result = import_file(other, "ant.jpg", self.data)
        self.assertEqual(result.status, "accepted")

    def test_it_restores_a_trashed_duplicate(self):
        first = import_file(self.project, "ant.jpg", self.data)
        image = Image.objects.get(pk=first.image_id)
        image.trashed_at = timezone.now()
        image.save()
        storage.media_path(image.thumbnail).unlink()

        result = import_file(self.project, "again.jpg", self.data, label_name="ants")

        self.assertEqual(result.status, "duplicate")
        self.assertEqual(result.image_id, image.pk)
        self.assertIn("had been deleted: restored it", result.message)
        image.refresh_from_db()
        self.assertIsNone(image.trashed_at)
        self.assertEqual(image.label.name, "ants")
        self.assertTrue(storage.media_path(image.thumbnail).exists())

    def test_it_rejects_a_broken_file_with_a_reason(self):
        result = import_file(self.project, "cut.jpg", self.data[: len(self.data) // 2])
        self.assertEqual(result.status, "rejected")
        self.assertIn("The image is incomplete", result.message)
        self.assertFalse(Image.objects.exists())

    def test_it_keeps_accepting_after_an_unexpected_failure(self):
        real_save = PILImage.Image.save
        calls = []

        def save(image, *args, **kwargs):
            calls.append(1)
            if len(calls) == 2:
                raise RuntimeError("encoder crashed")
            return real_save(image, *args, **kwargs)

        files = [png_bytes((n, n, n)) for n in range(3)]
        importer = Importer(self.project)
        with mock.patch.object(PILImage.Image, "save", save):
            for n, data in enumerate(files):
                importer.add_file(f"{n}.png", data)

        statuses = [r.status for r in importer.report.results]
        self.assertEqual(statuses, ["accepted", "rejected", "accepted"])
        self.assertIn("unexpected error", importer.report.results[1].message)
        self.assertEqual(Image.objects.count(), 2)

    def test_it_removes_the_written_files_when_the_row_cannot_be_saved(self):
        with mock.patch.object(QuerySet, "create", side_effect=DatabaseError("full")):
            result = import_file(self.project, "ant.jpg", self.data)

        self.assertEqual(result.status, "rejected")
        folder = storage.project_dir(self.project.pk)
        self.assertEqual([p for p in folder.rglob("*") if p.is_file()], [])

    def test_it_turns_a_concurrent_insert_of_the_same_file_into_a_duplicate(self):
        real_save = PILImage.Image.save
        sha256 = hashlib.sha256(self.data).hexdigest()

        def save_while_another_request_stores_it(image, *args, **kwargs):
            # Between our duplicate check and our insert, another upload of
            # the same bytes finishes first.
            if not Image.objects.filter(sha256=sha256).exists():
                Image.objects.create(
                    project=self.project,
                    file=storage.original_name_for(self.project.pk, sha256, "jpg"),
                    thumbnail=storage.thumbnail_name_for(self.project.pk, sha256),
                    original_name="theirs.jpg",
                    sha256=sha256,
                    width=1,
                    height=1,
                    format="JPEG",
                    size_bytes=len(self.data),
                )
            return real_save(image, *args, **kwargs)

        with mock.patch.object(
            PILImage.Image, "save", save_while_another_request_stores_it
        ):
            result = import_file(self.project, "ours.jpg", self.data)

        self.assertEqual(result.status, "duplicate")
        self.assertEqual(result.message, "Already in the project as theirs.jpg.")
        image = Image.objects.get()
        self.assertTrue(storage.media_path(image.file).exists())
        self.assertTrue(storage.media_path(image.thumbnail).exists())


class ImportZipTests(BaseTestCase):
    def setUp(self):
        super().setUp()
        self.ants = [p.read_bytes() for p in real_photos("ants", 2)]
        self.bees = [p.read_bytes() for p in real_photos("bees", 1)]

    def test_it_labels_images_from_their_folders(self):
        archive = zip_bytes(
            {
                "hymenoptera/train/ants/a.jpg": self.ants[0],
                "hymenoptera/val/bees/b.jpg": self.bees[0],
                "train/loose.png": png_bytes(),
                "__MACOSX/hymenoptera/train/ants/._a.jpg": b"\x00\x05\x16\x07",
                "hymenoptera/.DS_Store": b"\x00\x00\x00\x01Bud1",
                "hymenoptera/empty-folder/": b"",
            }
        )
        report = import_zip(self.project, io.BytesIO(archive), labels_from_folders=True)

        self.assertEqual(
            (report.accepted, report.duplicates, report.rejected), (3, 0, 0)
        )
        labels = {r.name: r.label for r in report.results}
        self.assertEqual(
            labels,
            {
                "hymenoptera/train/ants/a.jpg": "ants",
                "hymenoptera/val/bees/b.jpg": "bees",
                "train/loose.png": None,
            },
        )
        self.assertEqual(len(report.ignored), 2)
        names = set(Image.objects.values_list("original_name", "label__name"))
        self.assertEqual(
            names, {("a.jpg", "ants"), ("b.jpg", "bees"), ("loose.png", None)}
        )

    def test_it_ignores_folders_when_asked_to(self):
        archive = zip_bytes({"ants/a.jpg": self.ants[0]})
        report = import_zip(
            self.project, io.BytesIO(archive), labels_from_folders=False
        )
        self.assertEqual(report.results[0].label, None)
        self.assertFalse(Label.objects.exists())

    def test_it_reports_each_bad_member_and_keeps_the_good_ones(self):
        bomb = bytes(5 * 1024 * 1024)
        archive = zip_bytes(
            {
                "ants/a.jpg": self.ants[0],
                "ants/notes.txt": b"collected in June",
                "ants/cut.jpg": self.ants[1][:3000],
                "ants/empty.jpg": b"",
                f"{'x' * 40}/long.png": png_bytes(),
                "ants/zeros.bmp": bomb,
                "bees/b.jpg": self.bees[0],
                "bees/again.jpg": self.ants[0],
            },
            compression=zipfile.ZIP_DEFLATED,
        )
        report = import_zip(self.project, io.BytesIO(archive), labels_from_folders=True)

        outcome = {r.name: (r.status, r.message) for r in report.results}
        self.assertEqual(outcome["ants/a.jpg"][0], "accepted")
        self.assertEqual(outcome["bees/b.jpg"][0], "accepted")
        self.assertEqual(
            outcome["ants/notes.txt"],
            ("rejected", "This is not an image: it is a text file."),
        )
        self.assertEqual(
            outcome["ants/cut.jpg"],
            (
                "rejected",
                "The JPEG file is damaged or incomplete: its header cannot be read.",
            ),
        )
        self.assertEqual(outcome["ants/empty.jpg"], ("rejected", "The file is empty."))
        self.assertIn(
            "A label name has at most 32 characters (this one has 40).",
            outcome[f"{'x' * 40}/long.png"][1],
        )
        self.assertIn("expands", outcome["ants/zeros.bmp"][1])
        self.assertEqual(
            outcome["bees/again.jpg"],
            ("duplicate", "Already in the project as a.jpg."),
        )
        self.assertEqual(
            (report.accepted, report.duplicates, report.rejected), (2, 1, 5)
        )
        self.assertEqual(Image.objects.count(), 2)

    def test_it_rejects_a_corrupt_archive_clearly(self):
        archive = zip_bytes({"a.jpg": self.ants[0]})[:-30]
        report = import_zip(self.project, io.BytesIO(archive), labels_from_folders=True)
        self.assertEqual(report.rejected, 1)
        self.assertIn("not a readable zip archive", report.results[0].message)

    def test_it_rejects_a_damaged_member(self):
        data = bytearray(zip_bytes({"a.jpg": self.ants[0], "b.png": png_bytes()}))
        # Flip bytes in the middle of the first member's data: its CRC fails.
        data[500:520] = bytes(20)
        report = import_zip(
            self.project, io.BytesIO(bytes(data)), labels_from_folders=False
        )
        outcome = {r.name: r for r in report.results}
        self.assertEqual(outcome["a.jpg"].status, "rejected")
        self.assertIn("damaged inside the archive", outcome["a.jpg"].message)
        self.assertEqual(outcome["b.png"].status, "accepted")

    @override_settings(ZIP_MAX_FILES=2)
    def test_it_refuses_an_archive_with_too_many_files(self):
        archive = zip_bytes({f"{n}.png": png_bytes((n, n, n)) for n in range(3)})
        report = import_zip(
            self.project, io.BytesIO(archive), labels_from_folders=False
        )
        self.assertEqual(len(report.results), 1)
        self.assertIn(
            "holds 3 files; archives with more than 2", report.results[0].message
        )
        self.assertFalse(Image.objects.exists())

    @override_settings(ZIP_MAX_BYTES=1000)
    def test_it_refuses_an_archive_over_the_size_limit(self):
        archive = zip_bytes({"a.jpg": self.ants[0]})
        report = import_zip(
            self.project, io.BytesIO(archive), labels_from_folders=False
        )
        self.assertIn("archives over 0.0 MB are refused", report.results[0].message)

    @override_settings(IMAGE_MAX_BYTES=2000)
    def test_it_refuses_a_member_over_the_image_size_limit_unread(self):
        archive = zip_bytes({"a.jpg": self.ants[0]})
        report = import_zip(
            self.project, io.BytesIO(archive), labels_from_folders=False
        )
        self.assertIn("files over 0.0 MB are refused", report.results[0].message)

    def test_it_never_uses_member_paths_on_disk(self):
        archive = zip_bytes({"../../escape/ants/a.jpg": self.ants[0]})
        report = import_zip(self.project, io.BytesIO(archive), labels_from_folders=True)
        image = Image.objects.get(pk=report.results[0].image_id)
        self.assertEqual(image.original_name, "a.jpg")
        self.assertTrue(image.file.startswith(f"projects/{self.project.pk}/images/"))
        self.assertEqual(report.results[0].label, "ants")


class LabelFromFoldersTests(BaseTestCase):
    def test_it_uses_the_folder_the_file_is_in(self):
        self.assertEqual(label_from_folders(["train", "ants"]), "ants")
        self.assertEqual(label_from_folders(["bees"]), "bees")

    def test_it_counts_runs_of_whitespace_as_one_space(self):
        self.assertEqual(label_from_folders(["  spaced \t  out "]), "spaced out")

    def test_it_does_not_take_split_folders_as_labels(self):
        self.assertIsNone(label_from_folders(["train"]))
        self.assertIsNone(label_from_folders(["data", "VAL"]))
        self.assertIsNone(label_from_folders(["Test"]))
        self.assertIsNone(label_from_folders([]))


class ZipFolderLabelTests(BaseTestCase):
    def test_it_maps_folder_names_that_differ_by_whitespace_or_case_to_one_label(self):
        archive = zip_bytes(
            {
                "spaced   out/a.png": png_bytes((1, 1, 1)),
                "spaced out/b.png": png_bytes((2, 2, 2)),
                "Spaced\tOut/c.png": png_bytes((3, 3, 3)),
                " spaced out /d.png": png_bytes((4, 4, 4)),
            }
        )
        report = import_zip(self.project, io.BytesIO(archive), labels_from_folders=True)

        self.assertEqual((report.accepted, report.rejected), (4, 0))
        self.assertEqual(
            list(self.project.labels.values_list("name", flat=True)), ["spaced out"]
        )
        self.assertEqual(self.project.labels.get().images.count(), 4)

    def test_it_rejects_each_file_whose_folder_cannot_be_a_label(self):
        archive = zip_bytes(
            {
                "bell\x07/a.png": png_bytes((1, 1, 1)),
                f"{'y' * 33}/b.png": png_bytes((2, 2, 2)),
                "ants/c.png": png_bytes((3, 3, 3)),
            }
        )
        report = import_zip(self.project, io.BytesIO(archive), labels_from_folders=True)

        outcome = {r.name: (r.status, r.message) for r in report.results}
        self.assertEqual(
            outcome["bell\x07/a.png"],
            (
                "rejected",
                "Not imported: its label cannot be used. A label name cannot contain "
                "control characters; use letters, digits, spaces and punctuation. "
                "Rename the folder or choose another label.",
            ),
        )
        self.assertEqual(outcome[f"{'y' * 33}/b.png"][0], "rejected")
        self.assertIn("at most 32 characters", outcome[f"{'y' * 33}/b.png"][1])
        self.assertEqual(outcome["ants/c.png"][0], "accepted")
        self.assertEqual(
            list(Image.objects.values_list("original_name", "label__name")),
            [("c.png", "ants")],
        )
        self.assertEqual(list(Label.objects.values_list("name", flat=True)), ["ants"])
