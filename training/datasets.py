"""Dataset versions: frozen, split snapshots of a project's labeled images.

A version copies what training needs from each image (file, label name,
usage), so relabeling, renaming labels or deleting images later never changes
it. The image files stay on disk because `projects.storage.delete_files` keeps
every file a version item still references.
"""

from __future__ import annotations

import logging
import math
import random
import re
import secrets
import tempfile
import zipfile
from collections import defaultdict
from pathlib import PurePosixPath

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError

from projects import storage
from projects.models import Image, Project, name_key
from training.models import DEFAULT_TRAIN_RATIO, DatasetVersion, DatasetVersionItem

logger = logging.getLogger(__name__)

NAME_MAX_LENGTH = 32
NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]+")
PROPOSED_NAME_PATTERN = re.compile(r"[Vv](\d+)")
# Seeds are stored in a signed 64-bit column.
SEED_LIMIT = 2**63

TRAIN = DatasetVersionItem.Usage.TRAIN
EVAL = DatasetVersionItem.Usage.EVAL


def propose_dataset_version_name(project: Project) -> str:
    """The next free "V001"-style name: one above the highest taken."""
    taken = project.dataset_versions.values_list("name", flat=True)
    numbers = [
        int(match.group(1))
        for name in taken
        if (match := PROPOSED_NAME_PATTERN.fullmatch(name))
    ]
    return f"V{max(numbers, default=0) + 1:03d}"


def validate_dataset_version_name(project: Project, name) -> str:
    """Return the name, stripped, or raise ValidationError saying what is wrong."""
    if name is not None and not isinstance(name, str):
        raise ValidationError({"name": "The dataset version name must be text."})
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": "Give the dataset version a name."})
    if len(name) > NAME_MAX_LENGTH:
        raise ValidationError(
            {
                "name": f"A dataset version name can be at most {NAME_MAX_LENGTH} "
                f"characters long (this one has {len(name)})."
            }
        )
    if not NAME_PATTERN.fullmatch(name):
        raise ValidationError(
            {
                "name": "A dataset version name may contain only letters (A-Z), "
                "digits, “.”, “_” and “-”."
            }
        )
    if project.dataset_versions.filter(name__iexact=name).exists():
        raise ValidationError({"name": _clash_message(name)})
    return name


def _clash_message(name: str) -> str:
    return f"This project already has a dataset version named “{name}”."


def clean_train_ratio(value) -> float:
    """The ratio as a float in [0, 1], or a ValidationError."""
    message = "The training ratio must be a number from 0 to 1"
    if isinstance(value, bool):
        raise ValidationError({"train_ratio": f"{message}."})
    try:
        ratio = float(value)
    except (TypeError, ValueError):
        raise ValidationError({"train_ratio": f"{message}, not “{value}”."})
    if not math.isfinite(ratio) or not 0.0 <= ratio <= 1.0:
        raise ValidationError({"train_ratio": f"{message}, not {value}."})
    return ratio


def _clean_seed(seed) -> int:
    if seed is None:
        return secrets.randbelow(SEED_LIMIT)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValidationError({"seed": "The seed must be a whole number."})
    if not 0 <= seed < SEED_LIMIT:
        raise ValidationError({"seed": f"The seed must be from 0 to {SEED_LIMIT - 1}."})
    return seed


def train_count_for(n: int, ratio: float) -> int:
    """How many of a label's `n` images go to training.

    Rounded half up; a label with 2 or more images keeps at least one image on
    each side unless the ratio asks for everything on one side (0 or 1).
    """
    count = math.floor(n * ratio + 0.5)
    if n >= 2 and 0.0 < ratio < 1.0:
        count = min(max(count, 1), n - 1)
    return count


def split_by_label(
    images_by_label: dict[str, list[Image]],
    ratio: float,
    seed: int,
    kept_usages: dict[str, str] | None = None,
) -> dict[str, tuple[list[Image], list[Image]]]:
    """Shuffle each label's images with one seeded generator and cut them.

    The labels are visited in name order and each list must already be in
    image id order, so the same seed always gives the same split.

    `kept_usages` ({sha256: usage}) pins those images to their side; only the
    others are shuffled, and as many of them go to training as bring the
    label's whole training share closest to the ratio.
    """
    kept_usages = kept_usages or {}
    rng = random.Random(seed)
    split = {}
    for label in sorted(images_by_label):
        members = images_by_label[label]
        fresh = [image for image in members if image.sha256 not in kept_usages]
        kept = [image for image in members if image.sha256 in kept_usages]
        kept_train = [image for image in kept if kept_usages[image.sha256] == TRAIN]
        kept_eval = [image for image in kept if kept_usages[image.sha256] != TRAIN]

        rng.shuffle(fresh)
        wanted = train_count_for(len(members), ratio) - len(kept_train)
        count = min(max(wanted, 0), len(fresh))
        # Each side back in image order, so items list predictably.
        train = sorted(kept_train + fresh[:count], key=lambda image: image.pk)
        evaluation = sorted(kept_eval + fresh[count:], key=lambda image: image.pk)
        split[label] = (train, evaluation)
    return split


def publish_dataset_version(
    project: Project,
    *,
    name: str | None = None,
    train_ratio: float = DEFAULT_TRAIN_RATIO,
    user=None,
    seed: int | None = None,
    keep_split_of: DatasetVersion | None = None,
) -> DatasetVersion:
    """Freeze the project's labeled images into a new dataset version.

    With `keep_split_of`, images (by content) that were in that version keep
    their usage, so a model trained on it never finds its training images
    among the new version's validation images; only images new since then
    are split.

    The labels without images are left out; the returned version lists them
    in its `left_out_labels` attribute (not stored) for the publish message.

    Raises ValidationError (a message a person understands) for a bad or taken
    name, a ratio outside 0..1 or a project without labeled images. Nothing is
    written unless the whole version is.
    """
    ratio = clean_train_ratio(train_ratio)
    seed = _clean_seed(seed)
    if name is not None:
        name = validate_dataset_version_name(project, name)
    if keep_split_of is not None and keep_split_of.project_id != project.pk:
        raise ValidationError("That dataset version belongs to another project.")

    with transaction.atomic():
        images = list(
            Image.objects.alive()
            .labeled()
            .filter(project=project)
            .select_related("label")
            .order_by("id")
        )
        if not images:
            raise ValidationError(
                "There are no labeled images to publish: label some images first."
            )

        by_label = defaultdict(list)
        for image in images:
            by_label[image.label.name].append(image)
        kept_usages = None
        if keep_split_of is not None:
            kept_usages = dict(keep_split_of.items.values_list("sha256", "usage"))
        split = split_by_label(by_label, ratio, seed, kept_usages)

        version = _create_version(
            project, name=name, train_ratio=ratio, seed=seed, user=user
        )
        items = []
        for label, (train, evaluation) in split.items():
            for usage, members in ((TRAIN, train), (EVAL, evaluation)):
                items += [_item_for(version, image, label, usage) for image in members]
        _save_items(version, items)
        version.left_out_labels = sorted(
            set(project.labels.values_list("name", flat=True)) - set(by_label),
            key=str.lower,
        )

    logger.info(
        "Published dataset version %s of project %s: %s images, ratio %s, seed %s, "
        "split kept from %s",
        version.name,
        project.pk,
        version.image_count,
        ratio,
        seed,
        keep_split_of.name if keep_split_of else "none",
    )
    return version


def left_out_message(version: DatasetVersion) -> str:
    """A sentence naming the labels publishing left out, or "" when none."""
    names = getattr(version, "left_out_labels", [])
    if not names:
        return ""
    if len(names) == 1:
        return f"{names[0]} has no images and was left out."
    listed = ", ".join(names[:-1]) + f" and {names[-1]}"
    return f"{listed} have no images and were left out."


def current_dataset_version(project: Project) -> DatasetVersion | None:
    """The latest dataset version if it holds exactly the current labeled images.

    Compared by content and label name, so publishing again would only make
    an identical copy.
    """
    latest = project.dataset_versions.order_by("-created_at", "-id").first()
    if latest is None:
        return None

    published = set(latest.items.values_list("sha256", "label_name"))
    labeled = set(
        Image.objects.alive()
        .labeled()
        .filter(project=project)
        .values_list("sha256", "label__name")
    )
    return latest if published == labeled else None


def _create_version(
    project: Project, *, name: str | None, train_ratio: float, seed: int, user
) -> DatasetVersion:
    """Insert the version row; the unique constraint settles races for a name.

    A proposed name that another publish took meanwhile is proposed again; a
    name the user chose is theirs to change, so they get the clash error.
    """
    attempts = 1 if name else 3
    for attempt in range(1, attempts + 1):
        candidate = name or propose_dataset_version_name(project)
        try:
            with transaction.atomic():
                return DatasetVersion.objects.create(
                    project=project,
                    name=candidate,
                    train_ratio=train_ratio,
                    seed=seed,
                    created_by=user if user and user.is_authenticated else None,
                )
        except IntegrityError:
            logger.info("Dataset version name %s was taken meanwhile", candidate)
            if attempt == attempts:
                raise ValidationError({"name": _clash_message(candidate)})
    raise AssertionError("unreachable")


def _item_for(version, image, label_name, usage) -> DatasetVersionItem:
    return DatasetVersionItem(
        dataset_version=version,
        image=image,
        file=image.file,
        thumbnail=image.thumbnail,
        original_name=image.original_name,
        sha256=image.sha256,
        label_name=label_name,
        usage=usage,
    )


def _save_items(version: DatasetVersion, items: list[DatasetVersionItem]) -> None:
    """Store the items and the version's summary figures computed from them."""
    DatasetVersionItem.objects.bulk_create(items, batch_size=500)
    counts = summarize_items(items)
    version.image_count = len(items)
    version.label_names = sorted(counts)
    version.label_counts = counts
    version.save(update_fields=["image_count", "label_names", "label_counts"])


def summarize_items(items) -> dict[str, dict[str, int]]:
    """{label: {"train": n, "eval": m}}, labels in name order."""
    counts = defaultdict(lambda: {"train": 0, "eval": 0})
    for item in items:
        side = "train" if item.usage == TRAIN else "eval"
        counts[item.label_name][side] += 1
    return {label: counts[label] for label in sorted(counts)}


def create_version_from_items(
    project: Project,
    *,
    name: str | None,
    entries: list[tuple[Image, str, str]],
    user=None,
) -> DatasetVersion:
    """A version with exactly the given (image, label name, usage) entries.

    Used by the manifest import, where the usages come from the file rather
    than from a random split.
    """
    if name is not None:
        name = validate_dataset_version_name(project, name)
    if not entries:
        raise ValidationError("A dataset version needs at least one image.")

    train = sum(1 for _, _, usage in entries if usage == TRAIN)
    with transaction.atomic():
        version = _create_version(
            project,
            name=name,
            train_ratio=round(train / len(entries), 4),
            seed=_clean_seed(None),
            user=user,
        )
        items = [
            _item_for(version, image, label, usage) for image, label, usage in entries
        ]
        _save_items(version, items)
    return version


def delete_dataset_version(version: DatasetVersion) -> None:
    """Delete a version, and the files only it still kept.

    Raises ValidationError when a training version was trained on it.
    """
    runs = sorted(version.training_runs.values_list("version", flat=True))
    if runs:
        raise ValidationError(_in_use_message(version, runs))

    files = set()
    for file, thumbnail in version.items.values_list("file", "thumbnail"):
        files.update(f for f in (file, thumbnail) if f)
    try:
        with transaction.atomic():
            version.delete()
    except ProtectedError as exc:
        runs = sorted(run.version for run in exc.protected_objects)
        raise ValidationError(_in_use_message(version, runs))

    # Files of images that still exist (alive or in the trash) must stay.
    images = Image.objects.filter(project_id=version.project_id)
    still_used = storage.values_in_use(images, "file", files)
    still_used |= storage.values_in_use(images, "thumbnail", files)
    orphans = sorted(files - still_used)
    if orphans:
        transaction.on_commit(lambda: storage.delete_files(orphans))
    logger.info(
        "Deleted dataset version %s of project %s", version.name, version.project_id
    )


def _in_use_message(version: DatasetVersion, runs: list[str]) -> str:
    if len(runs) == 1:
        blocking = f"training version {runs[0]} was trained on it"
        advice = "Delete that training version first: open it"
    else:
        blocking = f"training versions {', '.join(runs)} were trained on it"
        advice = "Delete those training versions first: open each"
    return (
        f"Dataset version {version.name} cannot be deleted: {blocking}. {advice} "
        "on the Training versions page and choose Delete version."
    )


def safe_part(name: str, fallback: str) -> str:
    """A single, harmless path component for a zip entry."""
    part = name.replace("\\", "/").rsplit("/", 1)[-1]
    part = "".join(ch for ch in part if ch.isprintable()).strip()
    if part in {"", ".", ".."}:
        return fallback
    return part


def class_folder_entries(
    version: DatasetVersion,
) -> list[tuple[str, DatasetVersionItem]]:
    """(path in the zip, item) for the class folder export.

    train/<label>/<original name> and val/<label>/<original name>; names that
    clash in a folder (ignoring case, as many file systems do) get " (2)", ...
    Raises ValidationError when two labels would share a folder.
    """
    folders = label_folders(
        set(version.items.order_by().values_list("label_name", flat=True))
    )
    taken: set[str] = set()
    entries = []
    for item in version.items.order_by("label_name", "usage", "id"):
        side = "train" if item.usage == TRAIN else "val"
        label = folders[item.label_name]
        extension = PurePosixPath(item.file).suffix
        filename = safe_part(item.original_name, f"{item.sha256}{extension}")
        stem, suffix = _split_name(filename)
        candidate, n = filename, 1
        while f"{side}/{label}/{candidate}".lower() in taken:
            n += 1
            candidate = f"{stem} ({n}){suffix}"
        path = f"{side}/{label}/{candidate}"
        taken.add(path.lower())
        entries.append((path, item))
    return entries


def label_folders(label_names) -> dict[str, str]:
    """The folder of each label in a class folder export.

    Label names follow projects.labels.clean_label_name, so each is its own
    folder; a version published before that rule could hold names that lose
    characters on the way (a slash, "..") or differ only in case. Those are
    refused rather than silently merged into one folder.
    """
    folders = {name: safe_part(name, "unnamed") for name in sorted(label_names)}
    sharing = defaultdict(list)
    for name, folder in folders.items():
        sharing[name_key(folder)].append(name)
    clashes = [sorted(names) for names in sharing.values() if len(names) > 1]
    if clashes:
        listed = "; ".join(" and ".join(f"“{n}”" for n in names) for names in clashes)
        raise ValidationError(
            f"This dataset version cannot be exported as class folders: the labels "
            f"{listed} would share one folder. Rename the labels, publish a new "
            "dataset version and export that one, or export the ModelArts zip, "
            "which keeps every label name as it is."
        )
    return folders


def _split_name(filename: str) -> tuple[str, str]:
    path = PurePosixPath(filename)
    if path.suffix and path.stem:
        return path.stem, path.suffix
    return filename, ""


def write_zip(entries: list[tuple[str, str | bytes]]):
    """A temporary file holding a zip of (path in zip, stored file or bytes).

    Photos are already compressed, so they are stored as they are; missing
    files are left out and logged rather than failing the whole download.
    """
    # Spooled to disk, not memory: a version can hold gigabytes of photos. The
    # caller hands the file to a FileResponse, which closes it.
    output = tempfile.TemporaryFile()  # noqa: SIM115
    with zipfile.ZipFile(output, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for path, source in entries:
            if isinstance(source, bytes):
                archive.writestr(path, source, zipfile.ZIP_DEFLATED)
                continue
            try:
                archive.write(storage.media_path(source), path)
            except (OSError, ValueError):
                logger.warning("Left %s out of an export: cannot read %s", path, source)
    output.seek(0)
    return output


def export_class_folders(version: DatasetVersion):
    """The version as a zip of train/<label>/... and val/<label>/... folders."""
    return write_zip(
        [(path, item.file) for path, item in class_folder_entries(version)]
    )
