"""The metric functions against figures worked out by hand."""

from django.test import SimpleTestCase

from training.evaluation import (
    compare_label_f1,
    compute_metrics,
    confusion_matrix,
    format_duration,
    sorted_mistakes,
    weakest_label,
)

LABELS = ["ants", "bees", "wasps"]
# 9 validation images. ants: 3 right, 1 called bees. bees: 2 right, 1 called
# ants. wasps: 1 called ants, 1 called bees; the model never predicts wasps.
Y_TRUE = [0, 0, 0, 0, 1, 1, 1, 2, 2]
Y_PRED = [0, 0, 0, 1, 1, 1, 0, 0, 1]


class ConfusionMatrixTests(SimpleTestCase):
    def test_it_counts_true_labels_on_rows_and_predictions_on_columns(self):
        matrix = confusion_matrix(3, Y_TRUE, Y_PRED)
        self.assertEqual(matrix, [[3, 1, 0], [1, 2, 0], [1, 1, 0]])

    def test_it_refuses_lists_of_different_lengths(self):
        with self.assertRaises(ValueError):
            confusion_matrix(2, [0, 1], [0])


class ComputeMetricsTests(SimpleTestCase):
    def setUp(self):
        self.metrics = compute_metrics(LABELS, Y_TRUE, Y_PRED)

    def test_it_computes_accuracy_over_all_images(self):
        self.assertAlmostEqual(self.metrics["accuracy"], 5 / 9)
        self.assertEqual(self.metrics["count"], 9)

    def test_it_computes_precision_per_label(self):
        per_label = self.metrics["per_label"]
        # ants predicted 5 times, 3 of them right; bees 4 times, 2 right.
        self.assertAlmostEqual(per_label["ants"]["precision"], 3 / 5)
        self.assertAlmostEqual(per_label["bees"]["precision"], 2 / 4)

    def test_it_computes_recall_per_label(self):
        per_label = self.metrics["per_label"]
        self.assertAlmostEqual(per_label["ants"]["recall"], 3 / 4)
        self.assertAlmostEqual(per_label["bees"]["recall"], 2 / 3)
        self.assertEqual(per_label["wasps"]["recall"], 0.0)

    def test_it_computes_f1_as_the_harmonic_mean(self):
        per_label = self.metrics["per_label"]
        # 2 * 0.6 * 0.75 / 1.35 and 2 * 0.5 * (2/3) / (7/6)
        self.assertAlmostEqual(per_label["ants"]["f1"], 2 / 3)
        self.assertAlmostEqual(per_label["bees"]["f1"], 4 / 7)

    def test_it_defines_precision_as_zero_for_a_label_never_predicted(self):
        wasps = self.metrics["per_label"]["wasps"]
        self.assertEqual(wasps["precision"], 0.0)
        self.assertEqual(wasps["f1"], 0.0)
        self.assertTrue(wasps["never_predicted"])
        self.assertFalse(self.metrics["per_label"]["ants"]["never_predicted"])

    def test_it_counts_support_per_label(self):
        supports = {n: m["support"] for n, m in self.metrics["per_label"].items()}
        self.assertEqual(supports, {"ants": 4, "bees": 3, "wasps": 2})

    def test_it_macro_averages_with_every_label_weighing_the_same(self):
        self.assertAlmostEqual(self.metrics["precision"], (0.6 + 0.5 + 0) / 3)
        self.assertAlmostEqual(self.metrics["recall"], (0.75 + 2 / 3 + 0) / 3)
        self.assertAlmostEqual(self.metrics["f1"], 26 / 63)

    def test_it_keeps_the_label_order_and_the_matrix(self):
        self.assertEqual(self.metrics["labels"], LABELS)
        self.assertEqual(
            self.metrics["confusion_matrix"], [[3, 1, 0], [1, 2, 0], [1, 1, 0]]
        )

    def test_it_gives_all_ones_for_perfect_predictions(self):
        metrics = compute_metrics(["ants", "bees"], [0, 1, 1], [0, 1, 1])
        for key in ["accuracy", "precision", "recall", "f1"]:
            self.assertEqual(metrics[key], 1.0, key)

    def test_it_computes_f1_when_precision_and_recall_differ(self):
        # bees: precision 1/1, recall 1/2, F1 = 2 * 1 * 0.5 / 1.5
        metrics = compute_metrics(["ants", "bees"], [0, 1, 1], [0, 1, 0])
        self.assertAlmostEqual(metrics["per_label"]["bees"]["f1"], 2 / 3)
        # ants: precision 1/2, recall 1/1
        self.assertAlmostEqual(metrics["per_label"]["ants"]["f1"], 2 / 3)

    def test_it_gives_zero_f1_when_a_label_is_always_wrong(self):
        metrics = compute_metrics(["ants", "bees"], [0, 0], [1, 1])
        self.assertEqual(metrics["per_label"]["ants"]["f1"], 0.0)
        self.assertEqual(metrics["per_label"]["bees"]["f1"], 0.0)
        self.assertEqual(metrics["per_label"]["bees"]["support"], 0)
        self.assertEqual(metrics["accuracy"], 0.0)

    def test_it_answers_zeros_for_an_empty_validation_set(self):
        metrics = compute_metrics(["ants", "bees"], [], [])
        self.assertEqual(metrics["accuracy"], 0.0)
        self.assertEqual(metrics["f1"], 0.0)
        self.assertEqual(metrics["count"], 0)
        self.assertEqual(metrics["confusion_matrix"], [[0, 0], [0, 0]])


class HelperTests(SimpleTestCase):
    def test_it_orders_mistakes_most_confident_first(self):
        metrics = {
            "misclassified": [
                {"item_id": 1, "true": "a", "predicted": "b", "confidence": 0.55},
                {"item_id": 2, "true": "a", "predicted": "b", "confidence": 0.97},
                {"item_id": 3, "true": "b", "predicted": "a", "confidence": 0.71},
            ]
        }
        ids = [m["item_id"] for m in sorted_mistakes(metrics)]
        self.assertEqual(ids, [2, 3, 1])
        self.assertEqual(sorted_mistakes({}), [])

    def test_it_names_the_weakest_label(self):
        metrics = compute_metrics(LABELS, Y_TRUE, Y_PRED)
        self.assertEqual(weakest_label(metrics), "wasps")

    def test_it_compares_f1_per_label_with_a_gap_for_missing_labels(self):
        first = compute_metrics(["ants", "bees"], [0, 1, 1], [0, 1, 0])
        second = compute_metrics(["ants", "bees", "wasps"], Y_TRUE, Y_PRED)
        rows = {r.name: r for r in compare_label_f1(first, second)}
        self.assertEqual(list(rows), ["ants", "bees", "wasps"])
        self.assertAlmostEqual(rows["ants"].difference, 2 / 3 - 2 / 3)
        self.assertAlmostEqual(rows["bees"].difference, 4 / 7 - 2 / 3)
        self.assertIsNone(rows["wasps"].first)
        self.assertIsNone(rows["wasps"].difference)

    def test_it_formats_durations_for_people(self):
        self.assertEqual(format_duration(8.42), "8.4 s")
        self.assertEqual(format_duration(185), "3 min 05 s")
        self.assertEqual(format_duration(7800), "2 h 10 min")
        self.assertEqual(format_duration(None), "")
