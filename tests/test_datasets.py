import threading
import unittest
from collections import Counter

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models.signals import pre_save
from django.test import TransactionTestCase

from projects import storage
from projects.models import Image, Label, Project
from tests.base import BaseTestCase
from tests.image_fixtures import add_image, add_images
from training.datasets import (
    delete_dataset_version,
    left_out_message,
    propose_dataset_version_name,
    publish_dataset_version,
    train_count_for,
    validate_dataset_version_name,
)
from training.models import DatasetVersion, DatasetVersionItem, TrainingRun


def split_of(version) -> dict[str, str]:
    """{sha256: usage} of a version's items."""
    return dict(version.items.values_list("sha256", "usage"))


class ProposedNameTests(BaseTestCase):
    def test_it_proposes_v001_first(self):
        self.assertEqual(propose_dataset_version_name(self.project), "V001")

    def test_it_increments_the_proposed_number_after_each_publish(self):
        add_images(self.project, {"ants": 2, "bees": 2})
        first = publish_dataset_version(self.project)
        second = publish_dataset_version(self.project)
        self.assertEqual([first.name, second.name], ["V001", "V002"])
        self.assertEqual(propose_dataset_version_name(self.project), "V003")

    def test_it_skips_numbers_taken_by_custom_names(self):
        add_images(self.project, {"ants": 2})
        publish_dataset_version(self.project, name="V007")
        publish_dataset_version(self.project, name="release-1")
        self.assertEqual(propose_dataset_version_name(self.project), "V008")

    def test_it_counts_only_this_projects_versions(self):
        other = Project.objects.create(owner=self.bob, name="Other")
        add_images(other, {"ants": 2})
        publish_dataset_version(other, name="V005")
        self.assertEqual(propose_dataset_version_name(self.project), "V001")


class NameValidationTests(BaseTestCase):
    def test_it_accepts_letters_digits_dots_underscores_and_dashes(self):
        name = "Release_2.1-beta"
        self.assertEqual(validate_dataset_version_name(self.project, name), name)
        self.assertEqual(
            validate_dataset_version_name(self.project, "x" * 32), "x" * 32
        )

    def test_it_refuses_bad_names_with_a_clear_message(self):
        cases = {
            "": "Give the dataset version a name.",
            "   ": "Give the dataset version a name.",
            "x" * 33: "at most 32 characters",
            "two words": "only letters (A-Z), digits",
            "a/b": "only letters (A-Z), digits",
            "café": "only letters (A-Z), digits",
        }
        for name, message in cases.items():
            with self.subTest(name=name), self.assertRaises(ValidationError) as caught:
                validate_dataset_version_name(self.project, name)
            self.assertIn(message, caught.exception.message_dict["name"][0])

    def test_it_refuses_a_name_taken_in_the_project_ignoring_case(self):
        add_images(self.project, {"ants": 2})
        publish_dataset_version(self.project, name="V001")
        for name in ("V001", "v001"):
            with self.subTest(name=name), self.assertRaises(ValidationError) as caught:
                publish_dataset_version(self.project, name=name)
            self.assertEqual(
                caught.exception.messages,
                [f"This project already has a dataset version named “{name}”."],
            )
        self.assertEqual(self.project.dataset_versions.count(), 1)


class PublishTests(BaseTestCase):
    def test_it_publishes_under_a_custom_name(self):
        add_images(self.project, {"ants": 3, "bees": 3})
        version = publish_dataset_version(
            self.project, name=" spring-2024 ", user=self.alice
        )
        self.assertEqual(version.name, "spring-2024")
        self.assertEqual(version.created_by, self.alice)
        self.assertEqual(version.image_count, 6)

    def test_it_refuses_ratios_outside_0_to_1_and_non_numbers(self):
        add_images(self.project, {"ants": 3})
        for ratio in (-0.1, 1.01, 5, "abc", None, float("nan"), float("inf"), True):
            with (
                self.subTest(ratio=ratio),
                self.assertRaises(ValidationError) as caught,
            ):
                publish_dataset_version(self.project, train_ratio=ratio)
            self.assertIn(
                "The training ratio must be a number from 0 to 1",
                caught.exception.message_dict["train_ratio"][0],
            )
        self.assertFalse(DatasetVersion.objects.exists())

    def test_it_accepts_a_ratio_given_as_text(self):
        add_images(self.project, {"ants": 10})
        version = publish_dataset_version(self.project, train_ratio="0.7")
        self.assertEqual(version.train_ratio, 0.7)
        self.assertEqual(version.label_counts, {"ants": {"train": 7, "eval": 3}})

    def test_it_refuses_a_project_without_labeled_images(self):
        add_image(self.project)
        add_image(self.project, "ants", trashed=True)
        with self.assertRaises(ValidationError) as caught:
            publish_dataset_version(self.project)
        self.assertEqual(
            caught.exception.messages,
            ["There are no labeled images to publish: label some images first."],
        )
        self.assertFalse(DatasetVersion.objects.exists())

    def test_it_leaves_out_unlabeled_and_trashed_images(self):
        kept = add_images(self.project, {"ants": 2, "bees": 2})
        add_image(self.project)
        add_image(self.project, "ants", trashed=True)
        version = publish_dataset_version(self.project)
        self.assertEqual(
            set(version.items.values_list("image_id", flat=True)),
            {image.pk for image in kept},
        )

    def test_it_copies_what_training_needs_into_each_item(self):
        image = add_image(self.project, "ants", name="queen.jpg")
        version = publish_dataset_version(self.project, train_ratio=1)
        item = version.items.get()
        self.assertEqual(item.image, image)
        self.assertEqual(item.file, image.file)
        self.assertEqual(item.thumbnail, image.thumbnail)
        self.assertEqual(item.original_name, "queen.jpg")
        self.assertEqual(item.sha256, image.sha256)
        self.assertEqual(item.label_name, "ants")
        self.assertEqual(item.usage, DatasetVersionItem.Usage.TRAIN)

    def test_it_fills_the_summary_figures(self):
        add_images(self.project, {"bees": 5, "ants": 10, "Wasps": 2})
        version = publish_dataset_version(self.project, train_ratio=0.8)
        self.assertEqual(version.image_count, 17)
        self.assertEqual(version.label_names, ["Wasps", "ants", "bees"])
        self.assertEqual(
            version.label_counts,
            {
                "Wasps": {"train": 1, "eval": 1},
                "ants": {"train": 8, "eval": 2},
                "bees": {"train": 4, "eval": 1},
            },
        )

    def test_it_names_the_labels_it_leaves_out_for_lack_of_images(self):
        add_images(self.project, {"ants": 3, "bees": 3})
        Label.objects.create(project=self.project, name="wasps")
        add_image(self.project, "Hornets", trashed=True)

        version = publish_dataset_version(self.project)

        self.assertEqual(version.label_names, ["ants", "bees"])
        self.assertEqual(version.left_out_labels, ["Hornets", "wasps"])
        self.assertEqual(
            left_out_message(version),
            "Hornets and wasps have no images and were left out.",
        )

    def test_it_says_so_when_one_label_is_left_out(self):
        add_images(self.project, {"ants": 3, "bees": 3})
        Label.objects.create(project=self.project, name="wasps")
        version = publish_dataset_version(self.project)
        self.assertEqual(
            left_out_message(version), "wasps has no images and was left out."
        )

    def test_it_has_nothing_to_say_when_every_label_has_images(self):
        add_images(self.project, {"ants": 3, "bees": 3})
        version = publish_dataset_version(self.project)
        self.assertEqual(version.left_out_labels, [])
        self.assertEqual(left_out_message(version), "")


class SplitTests(BaseTestCase):
    def usage_counts(self, version) -> Counter:
        return Counter(version.items.values_list("label_name", "usage"))

    def test_it_splits_each_label_by_the_ratio(self):
        add_images(self.project, {"ants": 40, "bees": 20, "wasps": 7})
        version = publish_dataset_version(self.project, train_ratio=0.75)
        counts = self.usage_counts(version)
        self.assertEqual(counts["ants", "TRAIN"], 30)
        self.assertEqual(counts["ants", "EVAL"], 10)
        self.assertEqual(counts["bees", "TRAIN"], 15)
        self.assertEqual(counts["bees", "EVAL"], 5)
        # 7 * 0.75 = 5.25, rounded to 5.
        self.assertEqual(counts["wasps", "TRAIN"], 5)
        self.assertEqual(counts["wasps", "EVAL"], 2)

    def test_it_gives_both_sets_an_image_of_every_label_with_two(self):
        add_images(self.project, {"ants": 2, "bees": 3})
        for ratio in (0.01, 0.2, 0.5, 0.9, 0.99):
            with self.subTest(ratio=ratio):
                version = publish_dataset_version(self.project, train_ratio=ratio)
                counts = self.usage_counts(version)
                for label in ("ants", "bees"):
                    self.assertGreaterEqual(counts[label, "TRAIN"], 1)
                    self.assertGreaterEqual(counts[label, "EVAL"], 1)

    def test_it_puts_everything_on_one_side_at_ratio_0_or_1(self):
        add_images(self.project, {"ants": 4, "bees": 3})
        version = publish_dataset_version(self.project, train_ratio=0)
        self.assertEqual(set(version.items.values_list("usage", flat=True)), {"EVAL"})
        version = publish_dataset_version(self.project, train_ratio=1)
        self.assertEqual(set(version.items.values_list("usage", flat=True)), {"TRAIN"})

    def test_it_rounds_the_training_count_half_up_and_clamps_it(self):
        cases = [
            ((10, 0.8), 8),
            ((5, 0.9), 4),  # 4.5 rounds to 5, clamped to leave one for validation
            ((5, 0.5), 3),  # 2.5 rounds half up
            ((2, 0.01), 1),
            ((1, 0.8), 1),
            ((1, 0.3), 0),
            ((3, 0.0), 0),
            ((3, 1.0), 3),
        ]
        for (n, ratio), expected in cases:
            with self.subTest(n=n, ratio=ratio):
                self.assertEqual(train_count_for(n, ratio), expected)

    def test_it_reproduces_the_split_from_the_stored_seed(self):
        add_images(self.project, {"ants": 30, "bees": 30})
        first = publish_dataset_version(self.project, train_ratio=0.5)
        again = publish_dataset_version(self.project, train_ratio=0.5, seed=first.seed)
        self.assertEqual(split_of(again), split_of(first))

    def test_it_stores_the_given_seed(self):
        add_images(self.project, {"ants": 3})
        version = publish_dataset_version(self.project, seed=12345)
        version.refresh_from_db()
        self.assertEqual(version.seed, 12345)

    def test_it_draws_another_split_with_another_seed(self):
        add_images(self.project, {"ants": 30, "bees": 30})
        one = publish_dataset_version(self.project, train_ratio=0.5, seed=1)
        two = publish_dataset_version(self.project, train_ratio=0.5, seed=2)
        self.assertNotEqual(split_of(one), split_of(two))

    def test_it_refuses_a_seed_that_is_not_a_whole_number(self):
        add_images(self.project, {"ants": 3})
        for seed in ("7", 1.5, -1, 2**63):
            with self.subTest(seed=seed), self.assertRaises(ValidationError):
                publish_dataset_version(self.project, seed=seed)


class KeptSplitTests(BaseTestCase):
    """Publishing with keep_split_of, as incremental training does."""

    def usage_counts(self, version) -> Counter:
        return Counter(version.items.values_list("label_name", "usage"))

    def test_it_keeps_the_usage_of_every_image_of_the_earlier_version(self):
        add_images(self.project, {"ants": 10, "bees": 10})
        earlier = publish_dataset_version(self.project, train_ratio=0.8, seed=1)
        add_images(self.project, {"ants": 10, "bees": 10})

        # Another seed would shuffle the old images differently.
        later = publish_dataset_version(
            self.project, train_ratio=0.8, seed=2, keep_split_of=earlier
        )

        old, new = split_of(earlier), split_of(later)
        self.assertEqual(len(new), 40)
        self.assertEqual({sha: new[sha] for sha in old}, old)
        # 20 per label at 0.8 is 16 for training: the 8 kept ones and 8 new.
        self.assertEqual(
            self.usage_counts(later),
            {
                ("ants", "TRAIN"): 16,
                ("ants", "EVAL"): 4,
                ("bees", "TRAIN"): 16,
                ("bees", "EVAL"): 4,
            },
        )

    def test_it_splits_only_the_new_images_towards_each_labels_ratio(self):
        add_images(self.project, {"ants": 10, "bees": 10})
        earlier = publish_dataset_version(self.project, train_ratio=0.5, seed=1)
        add_images(self.project, {"ants": 4, "bees": 10, "wasps": 5})

        later = publish_dataset_version(
            self.project, train_ratio=0.8, seed=1, keep_split_of=earlier
        )

        kept = split_of(earlier)
        fresh = Counter(
            (label, usage)
            for sha, label, usage in later.items.values_list(
                "sha256", "label_name", "usage"
            )
            if sha not in kept
        )
        # ants: 14 at 0.8 want 11 for training; 5 are kept there, and all 4
        # new ones join them (as close as the kept ones allow).
        self.assertEqual(fresh["ants", "TRAIN"], 4)
        self.assertEqual(fresh["ants", "EVAL"], 0)
        # bees: 20 at 0.8 want 16; 5 kept, so 10 new ones go to training.
        self.assertEqual(fresh["bees", "TRAIN"], 10)
        self.assertEqual(fresh["bees", "EVAL"], 0)
        # wasps are all new: split as usual.
        self.assertEqual(fresh["wasps", "TRAIN"], 4)
        self.assertEqual(fresh["wasps", "EVAL"], 1)

    def test_it_sends_new_images_to_validation_when_training_has_enough(self):
        add_images(self.project, {"ants": 10, "bees": 10})
        earlier = publish_dataset_version(self.project, train_ratio=1)
        add_images(self.project, {"ants": 4})

        later = publish_dataset_version(
            self.project, train_ratio=0.5, keep_split_of=earlier
        )

        self.assertEqual(
            self.usage_counts(later),
            {("ants", "TRAIN"): 10, ("ants", "EVAL"): 4, ("bees", "TRAIN"): 10},
        )

    def test_it_keeps_the_usage_of_a_relabeled_image(self):
        images = add_images(self.project, {"ants": 5, "bees": 5})
        earlier = publish_dataset_version(self.project, train_ratio=0.6)
        moved = next(
            image for image in images if split_of(earlier)[image.sha256] == "TRAIN"
        )
        moved.label = Label.objects.get(project=self.project, name="bees")
        moved.save()

        later = publish_dataset_version(
            self.project, train_ratio=0.6, keep_split_of=earlier
        )

        item = later.items.get(sha256=moved.sha256)
        self.assertEqual((item.label_name, item.usage), ("bees", "TRAIN"))
        self.assertEqual(split_of(later), split_of(earlier))

    def test_it_reproduces_the_kept_split_from_the_stored_seed(self):
        add_images(self.project, {"ants": 10, "bees": 10})
        earlier = publish_dataset_version(self.project, train_ratio=0.5)
        add_images(self.project, {"ants": 10, "bees": 10})
        one = publish_dataset_version(
            self.project, train_ratio=0.5, keep_split_of=earlier
        )
        two = publish_dataset_version(
            self.project, train_ratio=0.5, seed=one.seed, keep_split_of=earlier
        )
        self.assertEqual(split_of(one), split_of(two))

    def test_it_refuses_to_keep_the_split_of_another_projects_version(self):
        other = Project.objects.create(owner=self.bob, name="Other")
        add_images(other, {"ants": 3})
        foreign = publish_dataset_version(other)
        add_images(self.project, {"ants": 3})

        with self.assertRaises(ValidationError) as caught:
            publish_dataset_version(self.project, keep_split_of=foreign)

        self.assertEqual(
            caught.exception.messages,
            ["That dataset version belongs to another project."],
        )
        self.assertFalse(self.project.dataset_versions.exists())


class ImmutabilityTests(BaseTestCase):
    def setUp(self):
        super().setUp()
        self.images = add_images(self.project, {"ants": 4, "bees": 4})
        self.version = publish_dataset_version(self.project, train_ratio=0.5)
        self.before = list(
            self.version.items.values_list(
                "file", "thumbnail", "original_name", "sha256", "label_name", "usage"
            )
        )

    def assertUnchanged(self):
        version = DatasetVersion.objects.get(pk=self.version.pk)
        after = list(
            version.items.values_list(
                "file", "thumbnail", "original_name", "sha256", "label_name", "usage"
            )
        )
        self.assertEqual(after, self.before)
        self.assertEqual(version.label_names, ["ants", "bees"])
        self.assertEqual(
            version.label_counts,
            {"ants": {"train": 2, "eval": 2}, "bees": {"train": 2, "eval": 2}},
        )
        self.assertEqual(version.image_count, 8)

    def test_it_keeps_label_names_after_a_label_is_renamed(self):
        Label.objects.filter(project=self.project, name="ants").update(
            name="formicidae"
        )
        self.assertUnchanged()

    def test_it_keeps_labels_after_images_are_relabeled(self):
        bees = Label.objects.get(project=self.project, name="bees")
        Image.objects.filter(project=self.project).update(label=bees)
        Image.objects.filter(pk=self.images[0].pk).update(label=None)
        self.assertUnchanged()

    def test_it_keeps_items_after_a_label_is_deleted(self):
        Label.objects.filter(project=self.project, name="ants").delete()
        self.assertUnchanged()

    def test_it_keeps_items_and_files_after_an_image_is_deleted(self):
        image = self.images[0]
        storage.delete_files([image.file, image.thumbnail])
        image.delete()
        self.assertUnchanged()
        self.assertTrue(storage.media_path(image.file).exists())
        self.assertTrue(storage.media_path(image.thumbnail).exists())
        item = DatasetVersionItem.objects.get(sha256=image.sha256)
        self.assertIsNone(item.image)

    def test_it_is_not_changed_by_a_new_publish(self):
        add_images(self.project, {"ants": 3})
        publish_dataset_version(self.project)
        self.assertUnchanged()


class ConcurrentPublishTests(BaseTestCase):
    """A second publish that takes the name between our check and our insert."""

    def take_name_first(self, name):
        def receiver(sender, instance, **kwargs):
            pre_save.disconnect(receiver, sender=DatasetVersion)
            DatasetVersion.objects.create(
                project=instance.project, name=name, train_ratio=0.5, seed=1
            )

        pre_save.connect(receiver, sender=DatasetVersion, weak=False)
        self.addCleanup(pre_save.disconnect, receiver, sender=DatasetVersion)

    def test_it_answers_the_clash_error_and_writes_nothing(self):
        add_images(self.project, {"ants": 3, "bees": 3})
        self.take_name_first("V010")
        with self.assertRaises(ValidationError) as caught:
            publish_dataset_version(self.project, name="V010")
        self.assertEqual(
            caught.exception.messages,
            ["This project already has a dataset version named “V010”."],
        )
        self.assertFalse(DatasetVersion.objects.exists())
        self.assertFalse(DatasetVersionItem.objects.exists())

    def test_it_proposes_again_when_a_proposed_name_was_taken(self):
        add_images(self.project, {"ants": 3})
        self.take_name_first("V001")
        version = publish_dataset_version(self.project)
        self.assertEqual(version.name, "V001")
        self.assertEqual(version.items.count(), 3)
        self.assertEqual(DatasetVersion.objects.count(), 1)


@unittest.skipUnless(
    connection.vendor == "postgresql",
    "SQLite's in-memory test database cannot take two writers at once",
)
class RacingPublishTests(TransactionTestCase):
    """Two real transactions, on two connections, publishing the same name."""

    def test_it_lets_one_publish_win_and_gives_the_other_the_clash_error(self):
        owner = get_user_model().objects.create_user("carol")
        project = Project.objects.create(owner=owner, name="Race")
        add_images(project, {"ants": 10, "bees": 10})
        barrier = threading.Barrier(2)
        outcomes = []

        def publish():
            try:
                barrier.wait()
                version = publish_dataset_version(project, name="V001")
                outcomes.append(("published", version.items.count()))
            except ValidationError as exc:
                outcomes.append(("refused", exc.messages[0]))
            finally:
                connection.close()

        threads = [threading.Thread(target=publish) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        self.assertEqual(
            sorted(outcomes),
            [
                ("published", 20),
                (
                    "refused",
                    "This project already has a dataset version named “V001”.",
                ),
            ],
        )
        self.assertEqual(DatasetVersion.objects.count(), 1)
        self.assertEqual(DatasetVersionItem.objects.count(), 20)


class DeleteTests(BaseTestCase):
    def test_it_deletes_a_version_and_the_files_only_it_kept(self):
        gone, alive = add_images(self.project, {"ants": 2})
        version = publish_dataset_version(self.project)
        storage.delete_files([gone.file, gone.thumbnail])
        gone.delete()

        with self.captureOnCommitCallbacks(execute=True):
            delete_dataset_version(version)

        self.assertFalse(DatasetVersion.objects.exists())
        self.assertFalse(DatasetVersionItem.objects.exists())
        self.assertFalse(storage.media_path(gone.file).exists())
        self.assertFalse(storage.media_path(gone.thumbnail).exists())
        self.assertTrue(storage.media_path(alive.file).exists())
        self.assertTrue(storage.media_path(alive.thumbnail).exists())

    def test_it_keeps_files_another_version_still_uses(self):
        image = add_image(self.project, "ants")
        first = publish_dataset_version(self.project)
        publish_dataset_version(self.project)
        storage.delete_files([image.file])
        image.delete()

        with self.captureOnCommitCallbacks(execute=True):
            delete_dataset_version(first)
        self.assertTrue(storage.media_path(image.file).exists())

    def test_it_refuses_to_delete_a_version_a_training_run_used(self):
        add_images(self.project, {"ants": 2})
        version = publish_dataset_version(self.project)
        TrainingRun.objects.create(
            project=self.project, version="V003", dataset_version=version
        )
        with self.assertRaises(ValidationError) as caught:
            delete_dataset_version(version)
        self.assertEqual(
            caught.exception.messages,
            [
                "Dataset version V001 cannot be deleted: training version V003 was "
                "trained on it. Delete that training version first: open it on the "
                "Training versions page and choose Delete version."
            ],
        )
        self.assertTrue(DatasetVersion.objects.filter(pk=version.pk).exists())
