"""The bare training pipeline the `train` benchmark is compared with.

No Django, no database, no cache: decode each photo with Pillow, crop and
resize it as EfficientNet expects, embed it with the same pretrained backbone
the studio uses (training.ml.backbone), and fit a linear head (multinomial
logistic regression, full-batch L-BFGS) on the training items; report accuracy
and macro F1 on the validation items.

    python bench/baseline_train.py MANIFEST.json

The manifest lists {"path", "label", "usage": "TRAIN" | "EVAL"} items and the
backbone name. The benchmark writes it from the dataset version the studio
trained on, so both use the same photos and the same split. Like the
training worker, it keeps glibc from returning big buffers to the system
(training.ml.runtime.tune_allocator); without that, embedding here ran 3-4
times slower and the comparison would flatter the studio. The seconds
reported count everything from the start of this script, torch's import
included, as a training run's seconds do.
"""

import time

STARTED = time.perf_counter()

import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from PIL import Image  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from training.ml.backbone import BACKBONES, load_backbone, normalise  # noqa: E402
from training.ml.runtime import tune_allocator  # noqa: E402

BATCH_SIZE = 32
L2 = 1e-3


def load_photo(path: str, size: int) -> torch.Tensor:
    """Full decode, shorter side to size * 256/224, central crop, (3, S, S)."""
    with Image.open(path) as image:
        image = image.convert("RGB")
    scale = (size + 32) / min(image.size)
    width, height = round(image.width * scale), round(image.height * scale)
    image = image.resize((width, height), Image.Resampling.BICUBIC)
    left, top = (width - size) // 2, (height - size) // 2
    image = image.crop((left, top, left + size, top + size))
    pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    return pixels.view(size, size, 3).permute(2, 0, 1)


def macro_f1(y_true: list[int], y_pred: list[int], classes: int) -> float:
    scores = []
    for c in range(classes):
        tp = sum(t == c and p == c for t, p in zip(y_true, y_pred, strict=True))
        fp = sum(t != c and p == c for t, p in zip(y_true, y_pred, strict=True))
        fn = sum(t == c and p != c for t, p in zip(y_true, y_pred, strict=True))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        total = precision + recall
        scores.append(2 * precision * recall / total if total else 0.0)
    return sum(scores) / classes


def main() -> None:
    # The same process set-up as the training worker, so the comparison is
    # between pipelines, not between memory allocator settings.
    tune_allocator()
    manifest = json.loads(Path(sys.argv[1]).read_text())
    imported = time.perf_counter()
    backbone_name = manifest["backbone"]
    size = BACKBONES[backbone_name].image_size
    network = load_backbone(backbone_name)
    loaded = time.perf_counter()

    items = manifest["items"]
    labels = sorted({item["label"] for item in items})
    pixels = torch.stack([load_photo(item["path"], size) for item in items])
    decoded = time.perf_counter()

    with torch.inference_mode():
        features = torch.cat(
            [
                network.features(
                    # The loaded network is channels-last; so is its input.
                    normalise(batch.float()).contiguous(
                        memory_format=torch.channels_last
                    )
                )
                for batch in pixels.split(BATCH_SIZE)
            ]
        )
    embedded = time.perf_counter()

    targets = torch.tensor([labels.index(item["label"]) for item in items])
    train = torch.tensor([item["usage"] == "TRAIN" for item in items])
    head = torch.nn.Linear(features.shape[1], len(labels))
    optimizer = torch.optim.LBFGS(head.parameters(), max_iter=200)
    x, y = features[train], targets[train]

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(x), y)
        loss = loss + L2 * head.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        predicted = head(features[~train]).argmax(dim=1).tolist()
    truth = targets[~train].tolist()
    finished = time.perf_counter()

    correct = sum(t == p for t, p in zip(truth, predicted, strict=True))
    print(
        json.dumps(
            {
                "accuracy": correct / len(truth),
                "f1": macro_f1(truth, predicted, len(labels)),
                "train_items": int(train.sum()),
                "eval_items": len(truth),
                "seconds": finished - STARTED,
                "timings": {
                    "import_s": imported - STARTED,
                    "load_backbone_s": loaded - imported,
                    "decode_s": decoded - loaded,
                    "embed_s": embedded - decoded,
                    "fit_s": finished - embedded,
                },
                "torch_threads": torch.get_num_threads(),
            }
        )
    )


if __name__ == "__main__":
    main()
