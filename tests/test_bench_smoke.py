"""The benchmarks at tiny sizes, so that `make bench` cannot rot unnoticed.

bench/run.py --smoke runs every benchmark (import, train, retrain, gallery,
predict, memory) in a throwaway studio of its own and writes its results to a
temporary file. These tests check that each benchmark produced its figures,
its baseline and its targets; they never assert how fast anything was.
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from django.conf import settings
from django.test import SimpleTestCase

REPO = Path(settings.BASE_DIR)
BENCHMARKS = ("import", "train", "retrain", "gallery", "predict", "memory")


@pytest.mark.slow
class BenchSmokeTest(SimpleTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.work = tempfile.TemporaryDirectory(prefix="exeml-bench-smoke-")
        work = Path(cls.work.name)
        committed = REPO / "bench" / "results.json"
        cls.committed_before = committed.read_bytes() if committed.exists() else None

        out = work / "results.json"
        cls.proc = subprocess.run(
            [
                sys.executable,
                str(REPO / "bench" / "run.py"),
                "--smoke",
                "--work-dir",
                str(work / "studio"),
                "--out",
                str(out),
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=1200,
        )
        cls.results = json.loads(out.read_text()) if out.exists() else {}
        cls.committed_after = committed.read_bytes() if committed.exists() else None

    @classmethod
    def tearDownClass(cls):
        cls.work.cleanup()
        super().tearDownClass()

    def benchmark(self, name: str) -> dict:
        result = self.results.get("benchmarks", {}).get(name)
        self.assertIsNotNone(result, f"{name} is missing from the results")
        self.assertNotIn("error", result, result.get("error"))
        return result

    def test_it_finishes_without_errors(self):
        self.assertEqual(self.proc.returncode, 0, self.proc.stderr[-4000:])
        self.assertEqual(self.results["mode"], "smoke")
        self.assertEqual(sorted(self.results["benchmarks"]), sorted(BENCHMARKS))

    def test_it_records_the_machine(self):
        machine = self.results["machine"]
        self.assertGreater(machine["cores"], 0)
        self.assertTrue(machine["cpu"])
        self.assertTrue(machine["date"])

    def test_it_gives_every_benchmark_figures_baseline_and_target(self):
        for name in BENCHMARKS:
            with self.subTest(benchmark=name):
                result = self.benchmark(name)
                self.assertTrue(result["figures"])
                self.assertTrue(result["baseline"])
                targets = [row for row in result["rows"] if "rule" in row]
                self.assertTrue(targets, f"{name} has no target")
                for row in result["rows"]:
                    self.assertIsInstance(row["figure"], int | float)
                for row in targets:
                    self.assertIsInstance(row["passed"], bool)
                    self.assertTrue(row["rule"])

    def test_it_measures_training_beside_the_bare_pipeline(self):
        train = self.benchmark("train")
        run = train["figures"]["runs"]["balance"]
        self.assertEqual(run["status"], "succeeded")
        self.assertEqual(run["images"], 20)
        self.assertGreater(run["peak_rss_mb"], 0)
        self.assertGreaterEqual(run["accuracy"], 0)
        self.assertEqual(
            train["baseline"]["train_items"] + train["baseline"]["eval_items"], 20
        )

        retrain = self.benchmark("retrain")
        self.assertEqual(retrain["figures"]["images_added"], 2)
        self.assertEqual(retrain["figures"]["run"]["status"], "succeeded")

    def test_it_queues_train_and_retrain_to_one_running_worker(self):
        balance = self.benchmark("train")["figures"]["runs"]["balance"]
        retrain = self.benchmark("retrain")["figures"]["run"]
        self.assertTrue(balance["first_run_in_worker"])
        self.assertFalse(retrain["first_run_in_worker"])
        self.assertEqual(retrain["worker_pid"], balance["worker_pid"])
        self.assertFalse(self.results["driver_imported_torch"])
        # The sentinel, its pusher, monitor and worker: the whole tree is read.
        self.assertGreaterEqual(len(balance["peak_rss_by_process_mb"]), 4)

        worker = self.results["background_worker"]
        self.assertEqual(worker["runs"], 2)
        self.assertTrue(worker["stopped"])
        self.assertFalse(Path(f"/proc/{worker['pid']}").exists())

    def test_it_imports_every_generated_image(self):
        figures = self.benchmark("import")["figures"]
        self.assertEqual(figures["files"], 20)
        self.assertEqual(figures["accepted"], 20)

    def test_it_answers_every_prediction_request(self):
        figures = self.benchmark("predict")["figures"]
        self.assertEqual(figures["sequential"]["requests"], 10)
        self.assertEqual(figures["sequential"]["errors"], 0)
        self.assertEqual(figures["concurrent"]["errors"], 0)
        self.assertIn(figures["sequential"]["predicted_label"], {"ants", "bees"})

    def test_it_predicts_with_the_settings_of_bin_serve(self):
        predict = self.benchmark("predict")
        arenas = os.environ.get("MALLOC_ARENA_MAX") or "2"
        self.assertEqual(predict["figures"]["server_malloc_arena_max"], arenas)
        self.assertEqual(predict["baseline"]["malloc_arena_max"], arenas)
        threads = predict["figures"]["server_prediction_threads"]
        self.assertEqual(predict["baseline"]["prediction_threads_setting"], threads)
        if threads:
            self.assertEqual(predict["baseline"]["torch_threads"], threads)

    def test_it_keeps_torch_out_of_the_web_process_until_a_prediction(self):
        figures = self.benchmark("memory")["figures"]
        self.assertFalse(figures["web_torch_loaded"])
        self.assertTrue(figures["service_torch_loaded"])

    def test_it_counts_the_same_queries_whatever_the_number_of_images(self):
        gallery = self.benchmark("gallery")
        self.assertEqual(gallery["figures"]["rows"], 200)
        for name, page in gallery["figures"]["pages"].items():
            with self.subTest(page=name):
                small = gallery["baseline"]["pages"][name]
                self.assertEqual(page["queries"], small["queries"])

    def test_it_leaves_the_committed_results_alone(self):
        self.assertEqual(self.committed_after, self.committed_before)
