from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.urls import reverse

from labeling import actions
from projects import storage
from projects.labels import clean_label_name
from projects.models import Image, Label
from tests.base import BaseTestCase
from tests.image_fixtures import make_image, make_images
from training.models import DatasetVersion, DatasetVersionItem


class LabelTests(BaseTestCase):
    def setUp(self):
        super().setUp()
        self.ants = Label.objects.create(project=self.project, name="ants")
        self.bees = Label.objects.create(project=self.project, name="bees")

    def url(self, name, *args):
        return reverse(f"labeling:{name}", args=[self.project.pk, *args])

    def test_it_creates_a_label_with_a_colour(self):
        response = self.client.post(
            self.url("label_create"),
            {"name": "  wasps ", "color": "#F58231", "label": self.bees.pk},
            HTTP_HX_REQUEST="true",
        )
        self.assertEqual(response.status_code, 200)
        wasps = Label.objects.get(project=self.project, name="wasps")
        self.assertEqual(wasps.color, "#f58231")
        self.assertContains(response, "Label “wasps” added.")
        # The refreshed panel lists the new label with its number key, and the
        # grid's label filter offers it too.
        self.assertContains(response, 'data-assign-key="3"')
        self.assertContains(
            response, f'<option value="{self.bees.pk}" selected>bees</option>'
        )
        self.assertContains(response, 'id="filter-label" hx-swap-oob="true"')
        self.assertContains(response, f'<option value="{wasps.pk}">wasps</option>')

    def test_it_gives_a_new_label_an_unused_default_colour(self):
        Label.objects.filter(pk=self.ants.pk).update(color="#E6194B")
        label = actions.create_label(self.project, "wasps")
        self.assertEqual(label.color, "#3cb44b")

    def test_it_refuses_a_duplicate_name_ignoring_case(self):
        response = self.client.post(
            self.url("label_create"), {"name": "BEES"}, HTTP_HX_REQUEST="true"
        )
        self.assertContains(response, "already has a label named “BEES”")
        self.assertEqual(self.project.labels.count(), 2)

    def test_it_refuses_a_name_over_32_characters(self):
        response = self.client.post(
            self.url("label_create"), {"name": "x" * 33}, HTTP_HX_REQUEST="true"
        )
        self.assertContains(response, "at most 32 characters (this one has 33)")
        self.assertEqual(self.project.labels.count(), 2)

    def test_it_refuses_a_colour_that_is_not_hex(self):
        response = self.client.post(
            self.url("label_create"),
            {"name": "wasps", "color": "red;x"},
            HTTP_HX_REQUEST="true",
        )
        self.assertContains(response, "#rrggbb")
        self.assertFalse(self.project.labels.filter(name="wasps").exists())

    def test_it_allows_the_same_name_in_another_project(self):
        other = self.bob.projects.create(name="Bob's")
        label = actions.create_label(other, "ants")
        self.assertEqual(label.project, other)

    def test_it_renames_a_label_and_keeps_its_images(self):
        images = make_images(self.project, 3, label=self.ants)
        response = self.client.post(
            self.url("label_edit", self.ants.pk),
            {"name": "formicidae", "color": self.ants.color},
        )
        self.assertRedirects(response, self.url("label"))
        self.ants.refresh_from_db()
        self.assertEqual(self.ants.name, "formicidae")
        for image in images:
            image.refresh_from_db()
            self.assertEqual(image.label.name, "formicidae")
        self.assertEqual(self.project.label_counts()["formicidae"], 3)

    def test_it_allows_changing_only_the_case_of_a_name(self):
        self.client.post(self.url("label_edit", self.ants.pk), {"name": "Ants"})
        self.ants.refresh_from_db()
        self.assertEqual(self.ants.name, "Ants")

    def test_it_refuses_renaming_onto_another_label(self):
        response = self.client.post(
            self.url("label_edit", self.ants.pk), {"name": "Bees"}
        )
        self.assertContains(response, "already has a label named “Bees”")
        self.ants.refresh_from_db()
        self.assertEqual(self.ants.name, "ants")

    def test_it_recolours_a_label(self):
        self.client.post(
            self.url("label_edit", self.ants.pk), {"name": "ants", "color": "#00AA11"}
        )
        self.ants.refresh_from_db()
        self.assertEqual(self.ants.color, "#00aa11")

    def test_it_merges_one_label_into_another(self):
        make_images(self.project, 2, label=self.ants)
        make_images(self.project, 3, label=self.bees)
        response = self.client.post(
            self.url("label_merge", self.ants.pk), {"into": self.bees.pk}
        )
        self.assertRedirects(response, self.url("label"))
        self.assertFalse(Label.objects.filter(pk=self.ants.pk).exists())
        self.assertEqual(self.project.label_counts(), {"bees": 5})
        moved = Image.objects.filter(label=self.bees).exclude(labeled_by=None)
        self.assertEqual(moved.count(), 2)

    def test_it_refuses_merging_into_a_label_of_another_project(self):
        other = Label.objects.create(
            project=self.bob.projects.create(name="Bob's"), name="x"
        )
        response = self.client.post(
            self.url("label_merge", self.ants.pk), {"into": other.pk}
        )
        self.assertContains(response, "Choose a label of this project", status_code=400)
        self.assertTrue(Label.objects.filter(pk=self.ants.pk).exists())

    def test_it_asks_before_deleting_with_the_number_of_images(self):
        make_images(self.project, 4, label=self.ants)
        make_image(self.project, label=self.ants, trashed_at="2024-01-01T00:00Z")
        response = self.client.get(self.url("label_delete", self.ants.pk))
        self.assertContains(response, "<strong>4 images</strong> have this label")
        self.assertContains(response, 'value="label_only"')
        self.assertContains(response, 'value="label_and_images"')
        self.assertContains(response, 'value="label_images_and_files"')
        self.assertTrue(Label.objects.filter(pk=self.ants.pk).exists())

    def test_it_deletes_the_label_only_leaving_images_unlabeled(self):
        images = make_images(self.project, 3, label=self.ants)
        response = self.client.post(
            self.url("label_delete", self.ants.pk), {"mode": "label_only"}
        )
        self.assertRedirects(response, self.url("label"))
        self.assertFalse(Label.objects.filter(pk=self.ants.pk).exists())
        for image in images:
            image.refresh_from_db()
            self.assertIsNone(image.label)
            self.assertIsNone(image.trashed_at)
            self.assertIsNone(image.labeled_at)
        self.assertEqual(self.project.images.alive().unlabeled().count(), 3)

    def test_it_deletes_the_label_and_trashes_its_images_keeping_files(self):
        images = make_images(self.project, 3, label=self.ants)
        keep = make_image(self.project, label=self.bees)
        with self.captureOnCommitCallbacks(execute=True):
            self.client.post(
                self.url("label_delete", self.ants.pk), {"mode": "label_and_images"}
            )
        self.assertFalse(Label.objects.filter(pk=self.ants.pk).exists())
        self.assertEqual(list(self.project.images.alive()), [keep])
        for image in images:
            image.refresh_from_db()
            self.assertIsNotNone(image.trashed_at)
            self.assertTrue(storage.media_path(image.file).exists())
            self.assertTrue(storage.media_path(image.thumbnail).exists())

    def test_it_deletes_the_label_images_and_files(self):
        images = make_images(self.project, 2, label=self.ants)
        keep = make_image(self.project, label=self.bees)
        with self.captureOnCommitCallbacks(execute=True):
            response = self.client.post(
                self.url("label_delete", self.ants.pk),
                {"mode": "label_images_and_files"},
            )
        self.assertRedirects(response, self.url("label"))
        self.assertEqual(list(self.project.images.all()), [keep])
        for image in images:
            self.assertFalse(storage.media_path(image.file).exists())
            self.assertFalse(storage.media_path(image.thumbnail).exists())
        self.assertTrue(storage.media_path(keep.file).exists())

    def test_it_keeps_files_a_dataset_version_still_uses(self):
        used, unused = make_images(self.project, 2, label=self.ants)
        version = DatasetVersion.objects.create(
            project=self.project, name="V001", train_ratio=0.8, seed=1
        )
        DatasetVersionItem.objects.create(
            dataset_version=version,
            image=used,
            file=used.file,
            thumbnail=used.thumbnail,
            original_name=used.original_name,
            sha256=used.sha256,
            label_name="ants",
            usage=DatasetVersionItem.Usage.TRAIN,
        )
        with self.captureOnCommitCallbacks(execute=True):
            actions.delete_label(self.ants, "label_images_and_files")

        self.assertFalse(Image.objects.filter(pk__in=[used.pk, unused.pk]).exists())
        self.assertTrue(storage.media_path(used.file).exists())
        self.assertTrue(storage.media_path(used.thumbnail).exists())
        self.assertFalse(storage.media_path(unused.file).exists())
        self.assertEqual(version.items.get().image, None)

    def test_it_refuses_an_unknown_delete_mode(self):
        make_images(self.project, 2, label=self.ants)
        response = self.client.post(
            self.url("label_delete", self.ants.pk), {"mode": "everything"}
        )
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, "is not one of the available choices")
        self.assertEqual(self.project.label_counts()["ants"], 2)

    def test_it_lists_trashed_images_and_restores_them(self):
        images = make_images(self.project, 2, label=self.ants)
        actions.delete_label(self.ants, "label_and_images")
        response = self.client.get(self.url("trash"))
        self.assertContains(response, images[0].original_name)
        self.assertContains(response, "Restore all 2")

        response = self.client.post(
            self.url("trash_restore"), {"image": [images[0].pk]}
        )
        self.assertRedirects(response, self.url("trash"))
        self.assertEqual(list(self.project.images.alive()), [images[0]])
        self.assertIsNone(self.project.images.get(pk=images[0].pk).label)

        self.client.post(self.url("trash_restore"), {"all": "1"})
        self.assertEqual(self.project.images.alive().count(), 2)

    def test_it_refuses_to_restore_a_bad_image_id(self):
        trashed = make_image(self.project, trashed_at="2024-01-01T00:00Z")
        for bad in ["9223372036854775808", "²", "0"]:
            with self.subTest(bad=bad):
                response = self.client.post(
                    self.url("trash_restore"), {"image": [trashed.pk, bad]}, follow=True
                )
                self.assertRedirects(response, self.url("trash"))
                self.assertContains(response, f"Not a valid image id: “{bad}”.")
                trashed.refresh_from_db()
                self.assertIsNotNone(trashed.trashed_at)

    def test_it_empties_the_trash_with_the_files(self):
        gone, kept = make_images(self.project, 2)
        Image.objects.filter(pk=gone.pk).update(trashed_at="2024-01-01T00:00Z")
        self.assertContains(
            self.client.get(self.url("trash_empty")), "deletes the 1 image in the trash"
        )
        with self.captureOnCommitCallbacks(execute=True):
            self.client.post(self.url("trash_empty"))
        self.assertEqual(list(self.project.images.all()), [kept])
        self.assertFalse(storage.media_path(gone.file).exists())
        self.assertTrue(storage.media_path(kept.file).exists())

    def test_it_answers_404_for_another_users_labels_and_trash(self):
        self.client.force_login(self.bob)
        for name in ["label_edit", "label_delete"]:
            response = self.client.get(self.url(name, self.ants.pk))
            self.assertEqual(response.status_code, 404, name)
        for name in ["label_merge", "label_delete", "label_edit"]:
            response = self.client.post(
                self.url(name, self.ants.pk), {"mode": "label_only", "name": "x"}
            )
            self.assertEqual(response.status_code, 404, name)
        for name in ["trash", "trash_empty"]:
            self.assertEqual(self.client.get(self.url(name)).status_code, 404, name)
        for name in ["label_create", "trash_restore", "trash_empty"]:
            response = self.client.post(self.url(name), {"name": "x", "all": "1"})
            self.assertEqual(response.status_code, 404, name)
        self.assertEqual(self.project.labels.count(), 2)


class LabelNameRuleTests(BaseTestCase):
    """One rule for every label name, and uniqueness that ignores case in
    every alphabet."""

    def setUp(self):
        super().setUp()
        self.ete = Label.objects.create(project=self.project, name="Été")
        self.istanbul = Label.objects.create(project=self.project, name="İstanbul")

    def url(self, name, *args):
        return reverse(f"labeling:{name}", args=[self.project.pk, *args])

    def test_it_cleans_whitespace_and_refuses_what_cannot_be_a_folder(self):
        self.assertEqual(clean_label_name("  spaced \t\n  out "), "spaced out")
        refused = {
            "../../bees": "A label name cannot contain “/” (“../../bees”)",
            "a\\b": "A label name cannot contain “\\” (“a\\b”)",
            "..": "“..” cannot be a label name.",
            ".": "“.” cannot be a label name.",
            "bell\x07": "A label name cannot contain control characters",
            "   ": "Give the label a name.",
            "x" * 33: "A label name has at most 32 characters (this one has 33).",
            7: "A label name must be text.",
        }
        for name, message in refused.items():
            with self.subTest(name=name), self.assertRaises(ValidationError) as caught:
                clean_label_name(name)
            self.assertIn(message, caught.exception.messages[0])

    def test_it_refuses_names_that_break_the_rule_on_the_page(self):
        for name in ["../../bees", "a/b", "..", "tab\x00"]:
            with self.subTest(name=name):
                response = self.client.post(
                    self.url("label_create"), {"name": name}, HTTP_HX_REQUEST="true"
                )
                self.assertEqual(response.status_code, 200)
                self.assertFalse(response.context["message"])
                self.assertTrue(response.context["label_form"].errors["name"])
        self.assertEqual(self.project.labels.count(), 2)

    def test_it_refuses_a_non_ascii_name_that_differs_only_in_case(self):
        for name in ["été", "ÉTÉ", "istanbul", "ISTANBUL", "E\u0301te\u0301"]:
            with self.subTest(name=name):
                response = self.client.post(
                    self.url("label_create"), {"name": name}, HTTP_HX_REQUEST="true"
                )
                self.assertContains(response, "already has a label named")
        self.assertEqual(
            sorted(self.project.labels.values_list("name", flat=True)),
            ["Été", "İstanbul"],
        )

    def test_it_refuses_renaming_onto_a_non_ascii_name_in_another_case(self):
        wasps = Label.objects.create(project=self.project, name="wasps")
        response = self.client.post(self.url("label_edit", wasps.pk), {"name": "ÉTÉ"})
        self.assertContains(response, "already has a label named “ÉTÉ”")
        wasps.refresh_from_db()
        self.assertEqual(wasps.name, "wasps")

    def test_it_allows_changing_only_the_case_of_a_non_ascii_name(self):
        self.client.post(self.url("label_edit", self.ete.pk), {"name": "ÉTÉ"})
        self.ete.refresh_from_db()
        self.assertEqual((self.ete.name, self.ete.name_key), ("ÉTÉ", "été"))

    def test_it_keeps_the_database_constraint_for_any_alphabet(self):
        for name in ["été", "istanbul"]:
            with (
                self.subTest(name=name),
                self.assertRaises(IntegrityError),
                transaction.atomic(),
            ):
                Label.objects.create(project=self.project, name=name)
        self.assertEqual(self.project.labels.count(), 2)
