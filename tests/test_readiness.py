from django.urls import reverse

from projects.models import Label
from tests.base import BaseTestCase
from tests.image_fixtures import make_images


class ReadinessTests(BaseTestCase):
    def setUp(self):
        super().setUp()
        self.ants = Label.objects.create(project=self.project, name="ants")
        self.bees = Label.objects.create(project=self.project, name="bees")

    def test_it_is_ready_at_two_labels_with_five_images_each(self):
        make_images(self.project, 5, label=self.ants)
        make_images(self.project, 5, label=self.bees)
        readiness = self.project.readiness()
        self.assertTrue(readiness.ready)
        self.assertEqual(readiness.missing, [])
        self.assertEqual(readiness.warnings, [])
        self.assertEqual(readiness.label_counts, {"ants": 5, "bees": 5})
        self.assertTrue(self.project.is_ready_to_train())

    def test_it_is_not_ready_one_image_short(self):
        make_images(self.project, 5, label=self.ants)
        make_images(self.project, 4, label=self.bees)
        readiness = self.project.readiness()
        self.assertFalse(readiness.ready)
        self.assertEqual(readiness.missing, ["bees needs 1 more image"])

    def test_it_names_what_each_label_is_missing(self):
        make_images(self.project, 4, label=self.ants)
        make_images(self.project, 2, label=self.bees)
        readiness = self.project.readiness()
        self.assertFalse(readiness.ready)
        self.assertEqual(
            readiness.missing, ["ants needs 1 more image", "bees needs 3 more images"]
        )

    def test_it_asks_for_a_second_label(self):
        self.bees.delete()
        make_images(self.project, 7, label=self.ants)
        readiness = self.project.readiness()
        self.assertFalse(readiness.ready)
        self.assertEqual(
            readiness.missing, ["add 1 more label with at least 5 images each"]
        )

    def test_it_asks_for_labels_when_there_are_none(self):
        self.project.labels.all().delete()
        make_images(self.project, 12)
        self.assertEqual(
            self.project.readiness().missing,
            ["add 2 more labels with at least 5 images each"],
        )

    def test_it_ignores_unlabeled_images(self):
        make_images(self.project, 5, label=self.ants)
        make_images(self.project, 30)
        self.assertEqual(self.project.readiness().missing, ["bees needs 5 more images"])

    def test_it_does_not_count_trashed_images(self):
        make_images(self.project, 5, label=self.ants)
        make_images(self.project, 3, label=self.bees)
        make_images(self.project, 2, label=self.bees, trashed_at="2024-01-01T00:00Z")
        readiness = self.project.readiness()
        self.assertFalse(readiness.ready)
        self.assertEqual(readiness.missing, ["bees needs 2 more images"])
        self.assertEqual(readiness.label_counts, {"ants": 5, "bees": 3})

    def test_it_warns_about_strong_imbalance_without_blocking(self):
        make_images(self.project, 51, label=self.ants)
        make_images(self.project, 5, label=self.bees)
        readiness = self.project.readiness()
        self.assertTrue(readiness.ready)
        self.assertEqual(len(readiness.warnings), 1)
        self.assertIn("strongly imbalanced", readiness.warnings[0])
        self.assertIn("ants has 51 images, bees only 5", readiness.warnings[0])

    def test_it_does_not_warn_at_ten_times(self):
        make_images(self.project, 50, label=self.ants)
        make_images(self.project, 5, label=self.bees)
        self.assertEqual(self.project.readiness().warnings, [])

    def test_it_picks_the_labels_closest_to_five_when_more_are_short(self):
        wasps = Label.objects.create(project=self.project, name="wasps")
        make_images(self.project, 5, label=self.ants)
        make_images(self.project, 1, label=self.bees)
        make_images(self.project, 3, label=wasps)
        self.assertEqual(
            self.project.readiness().missing, ["wasps needs 2 more images"]
        )

    def test_it_warns_that_a_label_without_images_is_left_out(self):
        Label.objects.create(project=self.project, name="wasps")
        make_images(self.project, 5, label=self.ants)
        make_images(self.project, 5, label=self.bees)

        readiness = self.project.readiness()

        self.assertTrue(readiness.ready)
        self.assertEqual(
            readiness.warnings,
            ["wasps has no images and will be left out of training."],
        )
        page = self.client.get(reverse("labeling:label", args=[self.project.pk]))
        self.assertContains(page, "Ready to train")
        self.assertContains(
            page, "wasps has no images and will be left out of training."
        )

    def test_it_counts_a_label_with_only_trashed_images_as_empty(self):
        wasps = Label.objects.create(project=self.project, name="Wasps")
        hornets = Label.objects.create(project=self.project, name="hornets")
        make_images(self.project, 5, label=self.ants)
        make_images(self.project, 5, label=self.bees)
        make_images(self.project, 2, label=wasps, trashed_at="2024-01-01T00:00Z")

        self.assertEqual(
            self.project.readiness().warnings,
            [
                f"{hornets.name} has no images and will be left out of training.",
                "Wasps has no images and will be left out of training.",
            ],
        )

    def test_it_asks_for_images_rather_than_warning_when_a_label_is_needed(self):
        make_images(self.project, 5, label=self.ants)
        readiness = self.project.readiness()
        self.assertEqual(readiness.missing, ["bees needs 5 more images"])
        self.assertEqual(readiness.warnings, [])

    def test_it_shows_the_same_answer_on_the_labeling_page_and_the_api(self):
        make_images(self.project, 5, label=self.ants)
        make_images(self.project, 2, label=self.bees)
        page = self.client.get(reverse("labeling:label", args=[self.project.pk]))
        self.assertContains(page, "<li>bees needs 3 more images</li>", html=True)

        api = self.client.get(f"/api/projects/{self.project.pk}/readiness")
        self.assertEqual(
            api.json(),
            {
                "ready": False,
                "missing": ["bees needs 3 more images"],
                "warnings": [],
                "label_counts": {"ants": 5, "bees": 2},
            },
        )
