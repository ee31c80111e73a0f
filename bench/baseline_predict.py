"""The bare prediction loop the `predict` benchmark is compared with.

    python bench/baseline_predict.py MODEL_FILE PHOTO COUNT

Loads the model with training.ml.engine.load_predictor, decodes the photo once
with Pillow, then calls predictor.predict([image]) COUNT times in a loop: no
web server, no HTTP, no database, no decoding per call. Prints latency
percentiles and this process's memory as one JSON object.
"""

import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

WARM_UP = 5


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    lower = int(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


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
    from PIL import Image

    from training.ml.engine import load_predictor
    from training.ml.runtime import tune_allocator

    model_file, photo, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    # The same process set-up as the training worker, so the comparison is
    # between pipelines, not between memory allocator settings.
    tune_allocator()

    started = time.perf_counter()
    predictor = load_predictor(Path(model_file))
    load_s = time.perf_counter() - started

    started = time.perf_counter()
    with Image.open(photo) as image:
        image = image.convert("RGB")
    decode_ms = (time.perf_counter() - started) * 1000

    for _ in range(WARM_UP):
        predictor.predict([image])

    latencies = []
    started = time.perf_counter()
    for _ in range(count):
        call = time.perf_counter()
        scores = predictor.predict([image])[0]
        latencies.append((time.perf_counter() - call) * 1000)
    wall = time.perf_counter() - started

    import torch

    print(
        json.dumps(
            {
                "p50_ms": percentile(latencies, 0.5),
                "p95_ms": percentile(latencies, 0.95),
                "predictions_per_s": count / wall,
                "predictions": count,
                "predicted_label": scores[0][0],
                "decode_ms": decode_ms,
                "load_seconds": load_s,
                "rss_mb": rss_mb(),
                "torch_threads": torch.get_num_threads(),
            }
        )
    )


if __name__ == "__main__":
    main()
