"""The bare prediction loop the `predict` benchmark is compared with.

    python bench/baseline_predict.py MODEL_FILE PHOTO COUNT
    python bench/baseline_predict.py MODEL_FILE PHOTO --serve

Loads the model with training.ml.engine.load_predictor, decodes the photo once
with Pillow, then calls predictor.predict([image]) in a loop: no web server, no
HTTP, no database, no decoding per call. torch gets the thread count the web
process uses for a prediction (settings.PREDICTION_THREADS, 1 by default),
set the same way (training.ml.runtime.set_prediction_threads), so the loop
and the service compute with the same number of threads.

With COUNT it runs COUNT predictions and prints a summary as one JSON object.
With --serve it first prints {"ready": ...}, then reads a count per line on
stdin and answers each with a JSON list of that many latencies (ms), so the
benchmark can interleave rounds of this loop with rounds of HTTP requests and
both see the same moments of a busy machine.
"""

import json
import os
import sys
import time
from pathlib import Path

from harness import percentile

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

WARM_UP = 5


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    # The engine reads the studio's settings (image limits) on import; the
    # benchmark passes DJANGO_SETTINGS_MODULE, nothing here uses the database.
    import django

    django.setup()
    import torch
    from django.conf import settings
    from PIL import Image

    from training.ml.engine import load_predictor
    from training.ml.runtime import set_prediction_threads

    model_file, photo, count = sys.argv[1], sys.argv[2], sys.argv[3]

    started = time.perf_counter()
    # The same set-up as the studio's prediction code (training.serving):
    # the thread count here, the allocator inside load_predictor.
    set_prediction_threads(settings.PREDICTION_THREADS)
    predictor = load_predictor(Path(model_file))
    load_s = time.perf_counter() - started

    started = time.perf_counter()
    with Image.open(photo) as image:
        image = image.convert("RGB")
    decode_ms = (time.perf_counter() - started) * 1000

    labels = []

    def loop(n: int) -> list[float]:
        latencies = []
        for _ in range(n):
            call = time.perf_counter()
            scores = predictor.predict([image])[0]
            latencies.append((time.perf_counter() - call) * 1000)
            labels.append(scores[0][0])
        return latencies

    loop(WARM_UP)
    facts = {
        "predicted_label": labels[-1],
        "decode_ms": decode_ms,
        "load_seconds": load_s,
        "torch_threads": torch.get_num_threads(),
        "prediction_threads_setting": settings.PREDICTION_THREADS,
        "malloc_arena_max": os.environ.get("MALLOC_ARENA_MAX"),
    }

    if count == "--serve":
        print(json.dumps({"ready": True, **facts}), flush=True)
        for line in sys.stdin:
            latencies = loop(int(line))
            print(json.dumps({"latencies": latencies, "rss_mb": rss_mb()}), flush=True)
        return

    started = time.perf_counter()
    latencies = loop(int(count))
    wall = time.perf_counter() - started
    summary = {
        "p50_ms": percentile(latencies, 0.5),
        "p95_ms": percentile(latencies, 0.95),
        "predictions_per_s": len(latencies) / wall,
        "predictions": len(latencies),
        "rss_mb": rss_mb(),
        **facts,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
