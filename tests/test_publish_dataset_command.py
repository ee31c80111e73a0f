from io import StringIO

from django.core.management import CommandError, call_command

from projects.models import Project
from tests.base import BaseTestCase
from tests.image_fixtures import add_images
from training.models import DatasetVersion


def publish(*args) -> str:
    out = StringIO()
    call_command("publish_dataset", *args, stdout=out)
    return out.getvalue()


class PublishDatasetCommandTests(BaseTestCase):
    def setUp(self):
        super().setUp()
        add_images(self.project, {"ants": 5, "bees": 5})

    def test_it_prints_only_the_proposed_name(self):
        self.assertEqual(publish("--project", "Insects"), "V001\n")
        self.assertEqual(publish("--project", "insects"), "V002\n")
        version = DatasetVersion.objects.get(name="V001")
        self.assertEqual(version.image_count, 10)
        self.assertEqual(version.created_by, self.alice)

    def test_it_takes_a_name_and_a_ratio(self):
        output = publish(
            "--project", "Insects", "--version", "r-1", "--train-ratio", "0.6"
        )
        self.assertEqual(output, "r-1\n")
        version = DatasetVersion.objects.get(name="r-1")
        self.assertEqual(
            version.label_counts,
            {"ants": {"train": 3, "eval": 2}, "bees": {"train": 3, "eval": 2}},
        )

    def test_it_reproduces_a_split_with_a_seed(self):
        publish("--project", "Insects", "--seed", "7")
        publish("--project", "Insects", "--seed", "7")
        first, second = DatasetVersion.objects.order_by("id")
        self.assertEqual(
            list(first.items.values_list("sha256", "usage").order_by("sha256")),
            list(second.items.values_list("sha256", "usage").order_by("sha256")),
        )

    def test_it_fails_with_the_same_messages_as_the_pages(self):
        publish("--project", "Insects", "--version", "V001")
        cases = [
            (["--version", "V001"], "This project already has a dataset version named"),
            (["--version", "no spaces"], "may contain only letters (A-Z)"),
            (
                ["--train-ratio", "1.5"],
                "The training ratio must be a number from 0 to 1",
            ),
            (
                ["--train-ratio", "abc"],
                "The training ratio must be a number from 0 to 1",
            ),
        ]
        for args, message in cases:
            with self.subTest(args=args), self.assertRaises(CommandError) as caught:
                publish("--project", "Insects", *args)
            self.assertIn(message, str(caught.exception))
        self.assertEqual(DatasetVersion.objects.count(), 1)

    def test_it_names_a_missing_project(self):
        with self.assertRaisesMessage(
            CommandError, "There is no project named “Nope”."
        ):
            publish("--project", "Nope")

    def test_it_asks_for_the_owner_when_the_name_is_shared(self):
        bobs = Project.objects.create(owner=self.bob, name="Insects")
        add_images(bobs, {"wasps": 2})
        with self.assertRaisesMessage(CommandError, "add --owner USERNAME"):
            publish("--project", "Insects")
        self.assertEqual(publish("--project", "Insects", "--owner", "bob"), "V001\n")
        self.assertEqual(DatasetVersion.objects.get().project, bobs)

    def test_it_names_an_unknown_owner(self):
        with self.assertRaisesMessage(CommandError, "There is no user named “carol”."):
            publish("--project", "Insects", "--owner", "carol")
