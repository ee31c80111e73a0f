import io
import shutil
import tempfile
import zipfile
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import TestCase

from projects.models import Image, Project
from tests.base import BaseTestCase, hymenoptera_dir, real_photos


def run(*args) -> str:
    out = io.StringIO()
    call_command("import_images", *args, stdout=out)
    return out.getvalue()


class ImportImagesCommandTests(BaseTestCase):
    def setUp(self):
        super().setUp()
        self.root = Path(tempfile.mkdtemp()) / "photos"
        self.addCleanup(shutil.rmtree, self.root.parent)
        for split, label, photos in [
            ("train", "ants", real_photos("ants", 3)),
            ("val", "bees", real_photos("bees", 2)),
        ]:
            folder = self.root / split / label
            folder.mkdir(parents=True)
            for photo in photos:
                shutil.copy(photo, folder / photo.name)
        shutil.copy(real_photos("bees", 3)[2], self.root / "train" / "loose.jpg")
        (self.root / "train" / "ants" / "notes.txt").write_text("June")
        (self.root / "train" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")

    def test_it_imports_folders_with_labels_from_folder_names(self):
        output = run(
            "--project", "Insects", "--owner", "alice", "--labels-from-folders",
            str(self.root),
        )  # fmt: skip

        self.assertIn("accepted 6, duplicates 0, rejected 1", output)
        self.assertIn(
            "rejected   photos/train/ants/notes.txt: This is not an image: it is a "
            "text file.",
            output,
        )
        self.assertIn("Accepted per label: (no label) 1, ants 3, bees 2.", output)
        self.assertIn("Skipped 1 hidden or system files.", output)
        labels = dict(
            Image.objects.filter(project=self.project).values_list(
                "original_name", "label__name"
            )
        )
        self.assertEqual(labels["loose.jpg"], None)
        self.assertEqual(
            sorted(n for n in labels.values() if n), ["ants"] * 3 + ["bees"] * 2
        )

    def test_it_reports_duplicates_on_a_second_run(self):
        run("--project", "Insects", "--owner", "alice", str(self.root))
        output = run("--project", "Insects", "--owner", "alice", str(self.root))
        self.assertIn("accepted 0, duplicates 6, rejected 1", output)
        self.assertEqual(Image.objects.count(), 6)

    def test_it_prints_every_file_at_verbosity_2(self):
        output = run(
            "--project", "Insects", "--owner", "alice", "-v", "2", str(self.root)
        )
        self.assertIn("accepted   photos/train/loose.jpg", output)
        self.assertEqual(output.count("accepted   "), 6)

    def test_it_imports_single_files_and_zip_archives(self):
        archive = self.root.parent / "more.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            zf.write(real_photos("ants", 5)[4], "train/ants/zipped.jpg")
            zf.writestr("train/ants/broken.jpg", b"not really")
        photo = self.root / "val" / "bees" / real_photos("bees", 1)[0].name

        output = run(
            "--project", "Insects", "--owner", "alice", "--labels-from-folders",
            str(photo), str(archive),
        )  # fmt: skip

        self.assertIn("accepted 2, duplicates 0, rejected 1", output)
        self.assertIn("rejected   more.zip:train/ants/broken.jpg: This is not", output)
        labels = set(Image.objects.values_list("original_name", "label__name"))
        self.assertEqual(labels, {(photo.name, "bees"), ("zipped.jpg", "ants")})

    def test_it_creates_the_project_when_asked(self):
        output = run("--project", "Wasps", "--create", "--owner", "bob", str(self.root))
        self.assertIn("Created project “Wasps” for bob.", output)
        project = Project.objects.get(name="Wasps")
        self.assertEqual(project.owner, self.bob)
        self.assertEqual(project.images.count(), 6)

    def test_it_finds_a_non_ascii_project_name_in_any_case(self):
        project = Project.objects.create(owner=self.alice, name="Fourmis d'Été")
        run("--project", "FOURMIS D'ÉTÉ", "--owner", "alice", str(self.root))
        self.assertEqual(project.images.count(), 6)
        self.assertEqual(Project.objects.filter(owner=self.alice).count(), 2)

    def test_it_refuses_a_missing_project_without_create(self):
        with self.assertRaisesMessage(CommandError, "add --create"):
            run("--project", "Wasps", "--owner", "alice", str(self.root))

    def test_it_needs_an_owner_when_several_accounts_exist(self):
        with self.assertRaisesMessage(CommandError, "--owner USERNAME"):
            run("--project", "Insects", str(self.root))

    def test_it_refuses_an_unknown_owner(self):
        with self.assertRaisesMessage(CommandError, "No user named 'carol'"):
            run("--project", "Insects", "--owner", "carol", str(self.root))

    def test_it_refuses_a_path_that_does_not_exist(self):
        with self.assertRaisesMessage(CommandError, "No such file or folder"):
            run("--project", "Insects", "--owner", "alice", "/nonexistent/photos")


class ImportImagesOwnerTests(TestCase):
    def setUp(self):
        self.photos = [str(p) for p in real_photos("ants", 2)]

    def test_it_uses_the_only_account(self):
        ada = get_user_model().objects.create_user("ada")
        run("--project", "Ants", "--create", *self.photos)
        self.assertEqual(Project.objects.get(name="Ants").owner, ada)

    def test_it_creates_an_admin_account_on_a_fresh_install(self):
        output = run("--project", "Ants", "--create", *self.photos)

        admin = get_user_model().objects.get(username="admin")
        self.assertFalse(admin.has_usable_password())
        self.assertEqual(Project.objects.get(name="Ants").owner, admin)
        self.assertIn("python manage.py changepassword admin", output)


@pytest.mark.slow
class ImportHymenopteraTests(TestCase):
    def test_it_imports_the_whole_photo_set_once(self):
        folder = str(hymenoptera_dir())
        first = run("--project", "bees", "--create", "--labels-from-folders", folder)
        second = run("--project", "bees", "--labels-from-folders", folder)

        self.assertIn("accepted 398, duplicates 0, rejected 0", first)
        self.assertIn("Accepted per label: ants 194, bees 204.", first)
        self.assertIn("imageNotFound.gif: palette image", first)
        self.assertIn("accepted 0, duplicates 398, rejected 0", second)
        project = Project.objects.get(name="bees")
        self.assertEqual(project.label_counts(), {"ants": 194, "bees": 204})
