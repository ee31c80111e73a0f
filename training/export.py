"""A training version's model, packed for use outside the studio.

The zip holds a `torch.export` program that runs with nothing but torch
installed (the pretrained network's weights are inside), a JSON file naming the
labels and the preprocessing, and `predict.py`, a small example of calling it.
torch is imported only when an export is built.
"""

from __future__ import annotations

import logging
import re
import stat
import tempfile
import time
import zipfile
from pathlib import Path

from projects import storage
from training.models import TrainingRun
from training.serving import damaged_model_message

logger = logging.getLogger(__name__)

DESCRIPTION_NAME = "model.json"
EXAMPLE_NAME = "predict.py"

# Kept identical to the example in docs/exported-model.md (a test checks it).
EXAMPLE = '''\
"""Label photos with a model exported from ExeML Studio.

    python predict.py photo.jpg [photo2.png ...]

Needs only torch (the version model.json names under "exported_with" is sure
to read the model) and Pillow. Prepares each photo as the studio does before
the model sees it: upright from its EXIF orientation, RGB, the central square,
resized with bicubic filtering. The model itself scales the pixels.
"""

import json
import math
import sys
from pathlib import Path

import torch
from PIL import Image, ImageOps

HERE = Path(__file__).parent
model = torch.export.load(HERE / "model.pt2").module()
info = json.loads((HERE / "model.json").read_text())
labels = info["label_names"]
prep = info["preprocessing"]
size = prep["image_size"]


def prepare(path):
    """A photo -> float tensor (3, size, size) of RGB pixel values 0..255."""
    image = ImageOps.exif_transpose(Image.open(path))
    if image.mode in ("RGBA", "LA", "P"):
        # Transparent areas become white, as in the studio.
        image = image.convert("RGBA")
        white = Image.new("RGB", image.size, (255, 255, 255))
        white.paste(image, mask=image.getchannel("A"))
        image = white
    image = image.convert("RGB")

    # Halve large photos first, as the studio does: it is faster and gives
    # the same pixels' scale as the studio's fast JPEG decoding.
    need = math.ceil(size / prep["crop_fraction"])
    factor = 1
    while factor < 8 and min(image.size) // (factor * 2) >= need:
        factor *= 2
    if factor > 1:
        image = image.reduce(factor)

    side = min(image.size) * prep["crop_fraction"]
    left = (image.width - side) / 2
    top = (image.height - side) / 2
    box = (left, top, left + side, top + side)
    image = image.resize((size, size), Image.Resampling.BICUBIC, box=box)
    pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    return pixels.view(size, size, 3).permute(2, 0, 1).float()


def predict(paths):
    batch = torch.stack([prepare(path) for path in paths])
    with torch.inference_mode():
        probabilities = model(batch)
    for path, row in zip(paths, probabilities.tolist()):
        ranked = sorted(zip(labels, row), key=lambda pair: -pair[1])[:5]
        answer = {
            "predicted_label": ranked[0][0],
            "scores": [[label, round(p, 4)] for label, p in ranked],
        }
        print(json.dumps({"file": str(path), **answer}))


if __name__ == "__main__":
    predict(sys.argv[1:])
'''


class ExportFailed(Exception):
    """The model cannot be exported; str() says why."""


def download_name(run: TrainingRun) -> str:
    project = re.sub(r"[^A-Za-z0-9_-]+", "-", run.project.name).strip("-")
    return f"{project or 'project'}-{run.version}-model.zip"


def _entry(name: str) -> zipfile.ZipInfo:
    """A file that unpacks readable by everyone (rw-r--r--).

    Left to themselves, zipfile writes text as rw------- and copies the
    private mode of the temporary files.
    """
    entry = zipfile.ZipInfo(name, date_time=time.localtime()[:6])
    entry.external_attr = (stat.S_IFREG | 0o644) << 16
    entry.compress_type = zipfile.ZIP_DEFLATED
    return entry


def export_zip(run: TrainingRun):
    """An open temporary file holding the zip; it vanishes when closed."""
    from training.ml.engine import export_program, load_checkpoint

    model_path = storage.media_path(run.model_file)
    if not run.model_file or not model_path.is_file():
        raise ExportFailed(f"The model file of {run.version} is missing.")
    try:
        load_checkpoint(model_path)
    except Exception:
        # Whatever torch raises for a damaged file means nothing to a user.
        logger.exception("Could not read the model of run %s", run.pk)
        raise ExportFailed(damaged_model_message(run.version))

    # Left open for the response to stream; closing it removes it.
    archive = tempfile.TemporaryFile(suffix=".zip")  # noqa: SIM115
    try:
        with tempfile.TemporaryDirectory(prefix="exeml-export-") as folder:
            exported = export_program(model_path, Path(folder))
            with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
                for path in (exported.program, exported.torchscript):
                    zf.writestr(_entry(path.name), path.read_bytes())
                zf.writestr(_entry(DESCRIPTION_NAME), exported.description.read_bytes())
                zf.writestr(_entry(EXAMPLE_NAME), EXAMPLE)
    except Exception as exc:
        archive.close()
        logger.exception("Could not export the model of run %s", run.pk)
        raise ExportFailed(f"The model of {run.version} could not be exported: {exc}")

    archive.seek(0)
    logger.info("Exported the model of %s (run %s)", run.version, run.pk)
    return archive
