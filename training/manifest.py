"""ModelArts manifests: dataset versions as JSON Lines, out and back in.

One JSON object per image:

    {"source": "images/<sha256>.jpg", "usage": "TRAIN", "id": "<sha256>",
     "annotation": [{"type": "modelarts/image_classification", "name": "ants",
                     "annotated-by": "human", "creation-time": "2024-05-01 10:00:00"}]}

Exports put the manifest at the root of a zip, next to an `images/` folder, so
every `source` is the image's path inside that zip. Imports read such a zip
back; a source may also be an `obs://` or `s3://` address, matched to the zip
entry whose path it ends with.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from projects import storage
from projects.imaging import ImageRejected, decode_image
from projects.importing import ACCEPTED, DUPLICATE, Importer, make_thumbnail
from projects.labels import (
    LABEL_NAME_MAX_LENGTH,
    clean_label_name,
    get_or_create_label,
)
from projects.models import Image, Project, name_key
from training.datasets import (
    EVAL,
    TRAIN,
    create_version_from_items,
    validate_dataset_version_name,
    write_zip,
)
from training.models import DatasetVersion, DatasetVersionItem

logger = logging.getLogger(__name__)

ANNOTATION_TYPE = "modelarts/image_classification"
CONTENT_TYPE = "application/jsonlines"
LABEL_MAX_LENGTH = LABEL_NAME_MAX_LENGTH
MANIFEST_MAX_BYTES = 64 * 1024 * 1024
USAGES = {"TRAIN": TRAIN, "EVAL": EVAL}
# What reading a damaged, encrypted or oddly compressed zip entry can raise.
_UNREADABLE = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    OSError,
    ValueError,
    RuntimeError,
    NotImplementedError,
)


def source_for(item: DatasetVersionItem) -> str:
    """Where the item's image sits inside an exported zip."""
    extension = PurePosixPath(item.file).suffix.lower()
    return f"images/{item.sha256}{extension}"


def manifest_record(item: DatasetVersionItem, created: str) -> dict:
    return {
        "source": source_for(item),
        "usage": item.usage,
        "id": item.sha256,
        "annotation": [
            {
                "type": ANNOTATION_TYPE,
                "name": item.label_name,
                "annotated-by": "human",
                "creation-time": created,
            }
        ],
    }


def build_manifest(version: DatasetVersion) -> str:
    """The version's manifest, one line per image, in item order."""
    created = timezone.localtime(version.created_at).strftime("%Y-%m-%d %H:%M:%S")
    lines = [
        json.dumps(manifest_record(item, created), ensure_ascii=False)
        for item in version.items.order_by("id")
    ]
    return "".join(line + "\n" for line in lines)


def manifest_filename(version: DatasetVersion) -> str:
    return f"{version.name}.manifest"


def export_modelarts_zip(version: DatasetVersion):
    """A temporary file: the manifest at the root and the images under images/."""
    entries: list[tuple[str, str | bytes]] = [
        (manifest_filename(version), build_manifest(version).encode())
    ]
    entries += [(source_for(item), item.file) for item in version.items.order_by("id")]
    return write_zip(entries)


@dataclass
class ManifestLine:
    """One line of an imported manifest and what became of it."""

    number: int
    source: str = ""
    usage: str = ""
    label: str = ""
    member: str = ""
    # ok (checked), imported, duplicate, skipped, error
    status: str = "ok"
    message: str = ""
    image_id: int | None = None
    # Worth a person's attention even though it is no problem: a restore from
    # the trash, a label that changed, a picture listed twice.
    noteworthy: bool = False
    # Found while checking: the file's SHA-256, and whether the project holds
    # that picture already (image_id is then that image).
    sha256: str = ""
    existing: bool = False

    def fail(self, message: str) -> ManifestLine:
        self.status = "error"
        self.message = message
        return self

    def note(self, message: str) -> None:
        self.message = message
        self.noteworthy = True


@dataclass
class ManifestImportReport:
    """The outcome of importing a manifest zip, for the page and the API."""

    manifest_name: str = ""
    errors: list[str] = field(default_factory=list)
    lines: list[ManifestLine] = field(default_factory=list)
    version: DatasetVersion | None = None

    @property
    def problems(self) -> list[ManifestLine]:
        return [line for line in self.lines if line.status == "error"]

    @property
    def notable(self) -> list[ManifestLine]:
        """The lines a person should read: problems and notes."""
        return [
            line for line in self.lines if line.status == "error" or line.noteworthy
        ]

    @property
    def unremarkable(self) -> int:
        return len(self.lines) - len(self.notable)

    @property
    def imported(self) -> int:
        return sum(1 for line in self.lines if line.status == "imported")

    @property
    def duplicates(self) -> int:
        return sum(1 for line in self.lines if line.status in {"duplicate", "skipped"})

    @property
    def summary(self) -> str:
        if self.version:
            return (
                f"Dataset version {self.version.name} created with "
                f"{self.version.image_count} images ({self.imported} new, "
                f"{self.duplicates} already in the project)."
            )
        if self.imported:
            noun = "image" if self.imported == 1 else "images"
            return (
                f"No dataset version was created. The {self.imported} new {noun} "
                "imported before the problem stay in the project, labeled; the "
                "images that were already in the project were not changed. Fix the "
                "problem and import the zip again: images already imported are "
                "recognised, not stored twice."
            )
        if self.errors:
            return "Nothing was imported."
        return (
            f"Nothing was imported: {len(self.problems)} of {len(self.lines)} "
            "lines are not usable. Fix them and import the zip again."
        )

    def as_dict(self) -> dict:
        return {
            "manifest": self.manifest_name,
            "summary": self.summary,
            "errors": self.errors,
            "dataset_version": self.version.pk if self.version else None,
            "dataset_version_name": self.version.name if self.version else None,
            "imported": self.imported,
            "duplicates": self.duplicates,
            "lines": [
                {
                    "line": line.number,
                    "source": line.source,
                    "usage": line.usage,
                    "label": line.label,
                    "status": line.status,
                    "message": line.message,
                    "image_id": line.image_id,
                }
                for line in self.lines
            ],
        }


def parse_manifest(text: str) -> list[ManifestLine]:
    """Check every non-blank line; a line in error says why in `message`."""
    lines = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if raw.strip():
            lines.append(_parse_line(number, raw))
    return lines


def _parse_line(number: int, raw: str) -> ManifestLine:
    line = ManifestLine(number=number)
    try:
        record = json.loads(raw)
    except json.JSONDecodeError as exc:
        return line.fail(f"Not valid JSON: {exc.msg} (column {exc.colno}).")
    if not isinstance(record, dict):
        return line.fail("Not a JSON object.")

    source = record.get("source")
    if not isinstance(source, str) or not source.strip():
        return line.fail("No “source”: each line must name its image file.")
    line.source = source.strip()

    usage = record.get("usage")
    if not isinstance(usage, str) or usage.strip().upper() not in USAGES:
        shown = "none" if usage in (None, "") else f"“{usage}”"
        return line.fail(f"Unknown usage {shown}: use TRAIN or EVAL.")
    line.usage = USAGES[usage.strip().upper()]

    annotations = record.get("annotation")
    if not isinstance(annotations, list) or not annotations:
        return line.fail("No “annotation”: each line needs the image's label.")
    names = {}
    for annotation in annotations:
        if not isinstance(annotation, dict):
            return line.fail("Each annotation must be a JSON object.")
        kind = annotation.get("type", ANNOTATION_TYPE)
        if kind != ANNOTATION_TYPE:
            return line.fail(
                f"Annotation type “{kind}” is not image classification "
                f"({ANNOTATION_TYPE})."
            )
        name = annotation.get("name")
        if not isinstance(name, str) or not name.strip():
            return line.fail("An annotation has no label “name”.")
        names.setdefault(name_key(name), name.strip())
    if len(names) > 1:
        listed = ", ".join(sorted(names.values()))
        return line.fail(f"Several labels ({listed}): an image may have one label.")
    (label,) = names.values()
    try:
        line.label = clean_label_name(label)
    except ValidationError as exc:
        line.label = label
        return line.fail(" ".join(exc.messages))
    return line


def find_manifests(names: list[str]) -> list[str]:
    found = []
    for name in names:
        base = posixpath.basename(name).lower()
        if name.startswith("__MACOSX/") or base.startswith("._"):
            continue
        if base.endswith(".manifest") or base in {"manifest.json", "manifest.jsonl"}:
            found.append(name)
    return found


class _ZipIndex:
    """Finds the zip entry a manifest `source` points at."""

    def __init__(self, files: list[str], manifest_name: str):
        self.files = set(files)
        self.base = posixpath.dirname(manifest_name)
        self.by_basename: dict[str, list[str]] = {}
        for name in files:
            self.by_basename.setdefault(posixpath.basename(name), []).append(name)

    def resolve(self, source: str) -> str | None:
        path = source.replace("\\", "/")
        if "://" in path:
            path = path.split("://", 1)[1]
        else:
            for candidate in (posixpath.join(self.base, path.lstrip("/")), path):
                candidate = posixpath.normpath(candidate.lstrip("/"))
                if candidate in self.files:
                    return candidate

        # An address from elsewhere (obs://bucket/data/a.jpg): the entry whose
        # path the source ends with, the longest such path if several.
        matches = [
            name for name in self.files if ("/" + path).endswith("/" + name.lstrip("/"))
        ]
        if matches:
            return max(matches, key=len)
        same_name = self.by_basename.get(posixpath.basename(path), [])
        return same_name[0] if len(same_name) == 1 else None


def import_manifest_zip(
    project: Project, fileobj, *, name: str | None = None, user=None
) -> ManifestImportReport:
    """Import a zip holding a manifest and its images as a new dataset version.

    Everything that can be checked is checked before anything is written:
    every line, and every image file, decoded as the import pipeline decodes
    it. When one of them is wrong, nothing at all is imported. Then the new
    images are imported; only once they all are, in one transaction, do the
    images already in the project get the manifest's labels (and leave the
    trash), and the version is created. Should an image still fail while
    being imported, the new images imported before it stay in the project,
    labeled, and nothing else changes. Raises ValidationError for a bad or
    taken version name, before reading the file.
    """
    if name:
        name = validate_dataset_version_name(project, name)
    report = ManifestImportReport()

    try:
        archive = zipfile.ZipFile(fileobj)
    except (zipfile.BadZipFile, OSError, ValueError):
        report.errors.append("This file is not a zip archive.")
        return report

    with archive:
        infos = [info for info in archive.infolist() if not info.is_dir()]
        if len(infos) > settings.ZIP_MAX_FILES:
            report.errors.append(
                f"The zip holds {len(infos)} files; at most "
                f"{settings.ZIP_MAX_FILES} are accepted."
            )
            return report

        manifests = find_manifests([info.filename for info in infos])
        if not manifests:
            report.errors.append(
                "No manifest in the zip: it must hold one file ending in .manifest "
                "(or named manifest.json) next to the images it lists."
            )
            return report
        if len(manifests) > 1:
            report.errors.append(
                f"The zip holds several manifests ({', '.join(manifests)}): "
                "keep only one."
            )
            return report
        report.manifest_name = manifests[0]

        text = _read_manifest(archive, report)
        if text is None:
            return report
        report.lines = parse_manifest(text)
        if not report.lines:
            report.errors.append("The manifest is empty.")
            return report

        index = _ZipIndex(
            [i.filename for i in infos if i.filename != report.manifest_name],
            report.manifest_name,
        )
        _match_files(report.lines, index)
        _check_images(project, archive, report.lines)
        if report.problems:
            _mark_unused(
                report.lines,
                "Usable, but nothing was imported because of the lines with a problem.",
            )
            return report

        user = user if user and user.is_authenticated else None
        if not _import_new_images(project, archive, report.lines, user):
            return report
        report.version = _apply_and_publish(project, archive, report, name, user)

    if report.version is None:
        return report
    logger.info(
        "Imported manifest %s into project %s as dataset version %s",
        report.manifest_name,
        project.pk,
        report.version.name,
    )
    return report


def _read_manifest(archive: zipfile.ZipFile, report: ManifestImportReport):
    info = archive.getinfo(report.manifest_name)
    if info.file_size > MANIFEST_MAX_BYTES:
        report.errors.append(
            f"The manifest is larger than {MANIFEST_MAX_BYTES // 1024 // 1024} MB."
        )
        return None
    try:
        with archive.open(info) as handle:
            data = handle.read(MANIFEST_MAX_BYTES + 1)
    except _UNREADABLE as exc:
        report.errors.append(f"The manifest cannot be read from the zip: {exc}.")
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        report.errors.append("The manifest is not UTF-8 text.")
        return None


def _match_files(lines: list[ManifestLine], index: _ZipIndex) -> None:
    first_line_of: dict[str, int] = {}
    for line in lines:
        if line.status == "error":
            continue
        member = index.resolve(line.source)
        if member is None:
            line.fail(f"“{line.source}” is not in the zip.")
            continue
        if member in first_line_of:
            line.fail(f"The same file as line {first_line_of[member]}.")
            continue
        first_line_of[member] = line.number
        line.member = member


def _read_member(archive: zipfile.ZipFile, line: ManifestLine) -> bytes | None:
    """The bytes of the line's file, or None with the line failed."""
    limit = settings.IMAGE_MAX_BYTES
    info = archive.getinfo(line.member)
    if info.file_size > limit:
        line.fail(f"The file is larger than {limit // 1024 // 1024} MB.")
        return None
    try:
        with archive.open(info) as handle:
            data = handle.read(limit + 1)
    except _UNREADABLE as exc:
        line.fail(f"The file cannot be read from the zip: {exc}.")
        return None
    if len(data) > limit:
        line.fail(f"The file is larger than {limit // 1024 // 1024} MB.")
        return None
    return data


def _check_images(project: Project, archive, lines: list[ManifestLine]) -> None:
    """Read and decode every line's file, and find the images the project
    already holds; nothing is written."""
    # The pipeline decodes at thumbnail scale too: same check, same verdict.
    box = (settings.THUMBNAIL_SIZE, settings.THUMBNAIL_SIZE)
    known = {
        sha256: (pk, trashed_at is not None)
        for sha256, pk, trashed_at in Image.objects.filter(project=project).values_list(
            "sha256", "pk", "trashed_at"
        )
    }
    first_line_of: dict[str, ManifestLine] = {}
    for line in lines:
        if line.status != "ok":
            continue
        data = _read_member(archive, line)
        if data is None:
            continue
        line.sha256 = hashlib.sha256(data).hexdigest()
        if line.sha256 in first_line_of:
            first = first_line_of[line.sha256]
            line.status = "skipped"
            line.note(
                f"The same picture as line {first.number}: the version keeps it "
                "once, as listed there."
            )
            continue
        first_line_of[line.sha256] = line

        pk, trashed = known.get(line.sha256, (None, False))
        line.image_id, line.existing = pk, pk is not None
        # An image already in the project is not decoded again, except one in
        # the trash, whose thumbnail may have to be made anew to restore it.
        if pk is None or trashed:
            try:
                decode_image(data, draft_size=box)
            except ImageRejected as exc:
                line.fail(str(exc))


def _import_new_images(project, archive, lines, user) -> bool:
    """Import the pictures the project does not hold yet, with their labels.

    False when one fails: the import stops there, the lines say what became
    of them, and no image that was already in the project is touched.
    """
    importer = Importer(project, user=user)
    for line in lines:
        if line.status != "ok" or line.existing:
            continue
        data = _read_member(archive, line)
        if data is not None:
            result = importer.add_file(
                posixpath.basename(line.member), data, label_name=line.label
            )
            if result.status == ACCEPTED:
                line.status, line.image_id = "imported", result.image_id
                line.message = f"Imported as a new image, labeled “{result.label}”."
                if result.message:
                    line.note(f"{line.message} {result.message}")
                continue
            if result.status == DUPLICATE:
                # Imported by someone else meanwhile: an image like the others
                # the project already holds.
                line.image_id, line.existing = result.duplicate_of_id, True
                continue
            line.fail(result.message or "The image was refused.")

        _mark_unused(
            lines,
            f"Not imported: the import stopped at line {line.number}.",
            existing=f"Not changed: the import stopped at line {line.number}.",
        )
        return False
    return True


def _apply_and_publish(
    project, archive, report: ManifestImportReport, name, user
) -> DatasetVersion | None:
    """Label (and restore) the images already in the project and create the
    version, in one transaction: either all of it happens or none of it."""
    used = [line for line in report.lines if line.status in {"ok", "imported"}]
    notes: dict[int, tuple[str, bool]] = {}
    try:
        with transaction.atomic():
            version = _publish(project, archive, used, notes, name, user)
    except ValidationError as exc:
        report.errors.extend(exc.messages)
    except (ImageRejected, OSError) as exc:
        report.errors.append(f"An image in the trash could not be restored: {exc}")
    else:
        image_of = {line.sha256: line.image_id for line in used}
        for line in report.lines:
            if line.number in notes:
                line.status = "duplicate"
                line.message, line.noteworthy = notes[line.number]
            elif line.status == "skipped":
                line.image_id = image_of[line.sha256]
        return version

    _mark_unused(
        report.lines, "", existing="Not changed: no dataset version was created."
    )
    return None


def _publish(project, archive, used, notes, name, user) -> DatasetVersion:
    images = (
        Image.objects.filter(project=project)
        .select_related("label", "project")
        .in_bulk([line.image_id for line in used])
    )
    entries = []
    for line in used:
        image = images.get(line.image_id)
        if image is None:
            raise ValidationError(
                f"The image of line {line.number} was deleted during the import; "
                "import the zip again."
            )
        if line.existing:
            notes[line.number] = _update_existing(image, line, archive, user)
        elif image.label is None:
            # Its label was deleted since it was imported a moment ago.
            _update_existing(image, line, archive, user)
        entries.append((image, image.label.name, line.usage))
    return create_version_from_items(project, name=name, entries=entries, user=user)


def _update_existing(image: Image, line: ManifestLine, archive, user):
    """Give an image already in the project the manifest's label, restoring it
    from the trash if it was there; (message, noteworthy) for its line."""
    fields = []
    restored = image.trashed_at is not None
    if restored:
        _restore_files(image, archive, line)
        image.trashed_at = None
        fields.append("trashed_at")

    previous = image.label.name if image.label else None
    if previous is None or name_key(previous) != name_key(line.label):
        image.label = get_or_create_label(image.project, line.label)
        image.labeled_at = timezone.now()
        image.labeled_by = user
        fields += ["label", "labeled_at", "labeled_by"]
    if fields:
        image.save(update_fields=fields)

    label = image.label.name
    if restored:
        was = f" (it was labeled {previous})" if previous and previous != label else ""
        return (
            f"Was in the trash as {image.original_name}: restored, labeled "
            f"“{label}”{was}.",
            True,
        )
    if previous is None:
        return (
            f"Already in the project as {image.original_name}, unlabeled; now "
            f"labeled “{label}”, as in the manifest.",
            True,
        )
    if "label" in fields:
        return (
            f"Already in the project as {image.original_name}; its label changed "
            f"from {previous} to {label}, as in the manifest.",
            True,
        )
    return f"Already in the project as {image.original_name}, labeled “{label}”.", False


def _restore_files(image: Image, archive, line: ManifestLine) -> None:
    """Write the files of an image in the trash again if they are gone."""
    file_missing = not storage.media_path(image.file).exists()
    thumb_missing = not storage.media_path(image.thumbnail).exists()
    if not (file_missing or thumb_missing):
        return
    data = _read_member(archive, line)
    if data is None:
        raise ValidationError(line.message)
    if file_missing:
        storage.write_file(image.file, data)
    if thumb_missing:
        box = (settings.THUMBNAIL_SIZE, settings.THUMBNAIL_SIZE)
        thumbnail = make_thumbnail(decode_image(data, draft_size=box))
        storage.write_file(image.thumbnail, thumbnail)


def _mark_unused(lines, message: str, *, existing: str | None = None) -> None:
    """Say why the usable lines did nothing: `existing` for the images already
    in the project, `message` for the others (when given)."""
    for line in lines:
        if line.status != "ok":
            continue
        if line.existing and existing:
            line.message = existing
        elif message:
            line.message = message
