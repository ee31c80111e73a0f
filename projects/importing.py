"""The one import pipeline behind browser uploads, zip uploads and the command.

Every file gets a result: accepted, duplicate (of which image), or rejected
with a reason. A file that fails never stops the others, and a file is either
fully stored (original, thumbnail and row) or not at all.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import zipfile
import zlib
from collections import Counter, deque
from collections.abc import Iterable, Set
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from PIL import Image as PILImage

from projects import storage
from projects.imaging import DecodedImage, ImageRejected, decode_image
from projects.labels import (
    LABEL_NAME_MAX_LENGTH,
    clean_label_name,
    get_or_create_label,
)
from projects.models import Image, Label, Project, name_key

logger = logging.getLogger(__name__)

ACCEPTED = "accepted"
DUPLICATE = "duplicate"
REJECTED = "rejected"

LABEL_MAX_LENGTH = LABEL_NAME_MAX_LENGTH
# Folders that name a data split, not a label: train/ants/x.jpg is an ant.
SPLIT_FOLDERS = {"train", "val", "test"}
# Files that operating systems leave next to photos; skipped, not reported.
SYSTEM_NAMES = {"__macosx", "thumbs.db", "desktop.ini"}
# A zip member that expands more than this many times over is refused: photos
# are already compressed, so such a ratio means a zip bomb, not a picture.
ZIP_MAX_RATIO = 100
ZIP_RATIO_FROM_BYTES = 1024 * 1024
THUMBNAIL_QUALITY = 85
# Files decoded at once during a bulk import.
IMPORT_THREADS = max(1, min(4, os.cpu_count() or 1))


@dataclass
class FileResult:
    name: str
    status: str
    message: str = ""
    image_id: int | None = None
    duplicate_of_id: int | None = None
    label: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ImportReport:
    results: list[FileResult] = field(default_factory=list)
    # Hidden and system files (.DS_Store, __MACOSX/...) that were skipped.
    ignored: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return self._count(ACCEPTED)

    @property
    def duplicates(self) -> int:
        return self._count(DUPLICATE)

    @property
    def rejected(self) -> int:
        return self._count(REJECTED)

    def label_counts(self) -> dict[str, int]:
        """Accepted files per label; unlabeled files are counted under ""."""
        counts = Counter(r.label or "" for r in self.results if r.status == ACCEPTED)
        return dict(sorted(counts.items()))

    @property
    def notes(self) -> list[str]:
        """What the report says beyond one line per file."""
        if not self.ignored:
            return []
        return [
            f"{_files_were(len(self.ignored))} skipped: hidden or system files "
            f"(e.g. {self.ignored[0]})."
        ]

    def to_dict(self) -> dict:
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "ignored": len(self.ignored),
            "notes": self.notes,
            "results": [result.to_dict() for result in self.results],
        }

    def _count(self, status: str) -> int:
        return sum(1 for result in self.results if result.status == status)


def import_file(
    project: Project,
    name: str,
    data: bytes,
    *,
    label_name: str | None = None,
    user=None,
) -> FileResult:
    """Import one file; the Label named `label_name` is created if missing."""
    return Importer(project, user=user).add_file(name, data, label_name=label_name)


def import_zip(
    project: Project, fileobj: IO[bytes], *, labels_from_folders: bool, user=None
) -> ImportReport:
    """Import every image inside a zip archive, one result per member."""
    importer = Importer(project, user=user)
    importer.add_zip(fileobj, labels_from_folders=labels_from_folders)
    return importer.report


def label_from_folders(folders: list[str]) -> str | None:
    """The label a file's folders give it: the folder it sits in.

    A split folder (train, val, test) is not a label: train/ants/x.jpg is
    labeled "ants", train/x.jpg has no label. Runs of whitespace count as one
    space, as in every label name; whether the name is usable is for
    check_label_name to say.
    """
    if not folders:
        return None
    parent = " ".join(folders[-1].split())
    if not parent or parent.lower() in SPLIT_FOLDERS:
        return None
    return parent


def is_ignored(parts: list[str]) -> bool:
    """Hidden files and the litter of macOS and Windows, anywhere in the path."""
    return any(part.startswith(".") or part.lower() in SYSTEM_NAMES for part in parts)


def check_label_name(name: str) -> str:
    """The label name to use (the one rule of projects.labels), or
    ImageRejected saying why it cannot be one."""
    try:
        return clean_label_name(name)
    except ValidationError as exc:
        raise ImageRejected(
            f"Not imported: its label cannot be used. {' '.join(exc.messages)} "
            "Rename the folder or choose another label."
        )


def make_thumbnail(decoded: DecodedImage) -> bytes:
    """A JPEG that fits in THUMBNAIL_SIZE×THUMBNAIL_SIZE, aspect ratio kept."""
    image = decoded.image
    box = settings.THUMBNAIL_SIZE
    scale = min(box / image.width, box / image.height, 1.0)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    if size != image.size:
        # Box-reduce first, then bilinear: sharp enough at this size and about
        # twice as fast as bicubic, which counts when importing thousands.
        image = image.resize(size, PILImage.Resampling.BILINEAR, reducing_gap=2.0)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=THUMBNAIL_QUALITY)
    return out.getvalue()


@dataclass
class PendingFile:
    """A file on its way in: its bytes, or the reason it was refused unread."""

    name: str
    original_name: str
    label_name: str | None = None
    data: bytes | None = None
    problem: str | None = None


@dataclass
class _Prepared:
    """The work on a file that needs no database, done on a worker thread."""

    sha256: str
    decoded: DecodedImage | None = None
    thumbnail: bytes | None = None
    rejection: str | None = None


def _prepare(data: bytes, known: Set[str] = frozenset()) -> _Prepared:
    sha256 = hashlib.sha256(data).hexdigest()
    if sha256 in known:
        # Almost surely a duplicate: decoding it would be wasted.
        return _Prepared(sha256)
    try:
        decoded = decode_image(data, draft_size=_thumbnail_box())
        return _Prepared(sha256, decoded, make_thumbnail(decoded))
    except ImageRejected as exc:
        return _Prepared(sha256, rejection=str(exc))


class Importer:
    """Imports files into one project and collects their results in `report`.

    One importer serves a whole upload, archive or command run, so labels are
    looked up once each, not once per file. `on_result`, when given, is called
    with each result as soon as it is known.
    """

    def __init__(self, project: Project, *, user=None, on_result=None):
        self.project = project
        self.user = user
        self.on_result = on_result
        self.report = ImportReport()
        self._labels: dict[str, Label] = {}

    def add_file(
        self,
        name: str,
        data: bytes,
        *,
        label_name: str | None = None,
        original_name: str | None = None,
    ) -> FileResult:
        """Import `data`; `name` is what the report shows, e.g. a path in a zip."""
        pending = PendingFile(
            name, _clean_original_name(original_name or name), label_name, data
        )
        return self._finish(pending)

    def add_many(self, pending_files: Iterable[PendingFile]) -> None:
        """Import many files in order, decoding several at once on threads.

        Decoding and thumbnails run on worker threads (Pillow releases the GIL
        while it works); everything that touches the database or the stored
        files stays on this thread, in order.
        """
        known = set(
            Image.objects.filter(project=self.project).values_list("sha256", flat=True)
        )
        window: deque[tuple[PendingFile, Future | None]] = deque()
        with ThreadPoolExecutor(max_workers=IMPORT_THREADS) as pool:
            for pending in pending_files:
                future = None
                if pending.problem is None:
                    future = pool.submit(_prepare, pending.data, known)
                window.append((pending, future))
                if len(window) > 2 * IMPORT_THREADS:
                    self._finish(*window.popleft())
            while window:
                self._finish(*window.popleft())

    def add_uploaded_files(self, uploads, *, label_name: str | None = None) -> None:
        """Django UploadedFiles; one that is too large is refused unread."""

        def pending_files():
            for uploaded in uploads:
                name = _clean_original_name(uploaded.name or "upload")
                pending = PendingFile(name, name, label_name)
                if uploaded.size > settings.IMAGE_MAX_BYTES:
                    pending.problem = _too_large(uploaded.size)
                else:
                    pending.data = uploaded.read()
                yield pending

        self.add_many(pending_files())

    def add_zip(
        self,
        fileobj: IO[bytes],
        *,
        labels_from_folders: bool,
        name: str | None = None,
        member_prefix: str = "",
    ) -> None:
        """Import the images inside a zip; member names never touch the disk.

        A member is reported by its path inside the archive, after
        `member_prefix` ("photos.zip:" from the command line, nothing in a
        browser, where the archive is obvious).
        """
        name = name or Path(getattr(fileobj, "name", "") or "archive.zip").name
        size = _size_of(fileobj)
        if size > settings.ZIP_MAX_BYTES:
            self.reject(
                name,
                f"The archive is {_megabytes(size)}; archives over "
                f"{_megabytes(settings.ZIP_MAX_BYTES)} are refused.",
            )
            return

        try:
            archive = zipfile.ZipFile(fileobj)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError):
            self.reject(
                name,
                "This is not a readable zip archive; it may be damaged or "
                "incomplete, or another kind of file.",
            )
            return

        with archive:
            members = [info for info in archive.infolist() if not info.is_dir()]
            if len(members) > settings.ZIP_MAX_FILES:
                self.reject(
                    name,
                    f"The archive holds {len(members)} files; archives with more "
                    f"than {settings.ZIP_MAX_FILES} are refused.",
                )
                return

            results_before = len(self.report.results)
            ignored_before = len(self.report.ignored)
            self.add_many(
                pending
                for info in members
                if (
                    pending := self._zip_member(
                        archive, info, labels_from_folders, member_prefix
                    )
                )
            )

        # An archive that yields no result at all gets one, so that the
        # report never just says "0 accepted, 0 rejected".
        if len(self.report.results) == results_before:
            skipped = self.report.ignored[ignored_before:]
            message = "The zip holds no files to import."
            if skipped:
                message = (
                    f"The zip holds no files to import: {_files_were(len(skipped))} "
                    f"skipped as hidden or system files (e.g. {skipped[0]})."
                )
            self.reject(name, message)

    def reject(self, name: str, message: str, *, label: str | None = None):
        return self._finish(PendingFile(name, name, label, problem=message))

    def _zip_member(
        self,
        archive: zipfile.ZipFile,
        info: zipfile.ZipInfo,
        labels: bool,
        prefix: str,
    ) -> PendingFile | None:
        parts = [
            part
            for part in info.filename.replace("\\", "/").split("/")
            if part not in ("", ".", "..")
        ]
        if not parts or is_ignored(parts):
            self.report.ignored.append(info.filename)
            return None

        label_name = label_from_folders(parts[:-1]) if labels else None
        pending = PendingFile(prefix + "/".join(parts), parts[-1][:255], label_name)
        pending.problem = _zip_member_problem(info)
        if pending.problem:
            return pending

        try:
            with archive.open(info) as member:
                pending.data = member.read(settings.IMAGE_MAX_BYTES + 1)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
            pending.problem = f"This file is damaged inside the archive ({exc})."
        except (NotImplementedError, RuntimeError) as exc:
            pending.problem = f"This file cannot be extracted from the archive ({exc})."
        else:
            if len(pending.data) > settings.IMAGE_MAX_BYTES:
                pending.problem = _too_large(len(pending.data))
        return pending

    def _finish(self, pending: PendingFile, future: Future | None = None) -> FileResult:
        if pending.problem is not None:
            result = FileResult(
                pending.name, REJECTED, pending.problem, label=pending.label_name
            )
        else:
            try:
                prepared = future.result() if future else None
                result = self._import(pending, prepared)
            except Exception:
                logger.exception(
                    "Import of %s into project %s failed", pending.name, self.project.pk
                )
                result = FileResult(
                    pending.name,
                    REJECTED,
                    "An unexpected error stopped this file; it was not imported.",
                    label=pending.label_name,
                )

        self.report.results.append(result)
        if self.on_result:
            self.on_result(result)
        return result

    def _import(self, pending: PendingFile, prepared: _Prepared | None) -> FileResult:
        name, data = pending.name, pending.data
        try:
            label_name = pending.label_name
            # A label of only whitespace means no label, as an empty one does.
            if label_name is not None and label_name.strip():
                label_name = check_label_name(label_name)
            else:
                label_name = None
        except ImageRejected as exc:
            return FileResult(name, REJECTED, str(exc), label=pending.label_name)

        sha256 = prepared.sha256 if prepared else hashlib.sha256(data).hexdigest()
        existing = self._find(sha256)
        if existing is not None:
            return self._duplicate(name, existing, data, label_name)

        if prepared is None or (prepared.decoded is None and not prepared.rejection):
            prepared = _prepare(data)
        if prepared.rejection:
            return FileResult(name, REJECTED, prepared.rejection, label=label_name)

        return self._store(pending, label_name, prepared)

    def _store(
        self, pending: PendingFile, label_name: str | None, prepared: _Prepared
    ) -> FileResult:
        project_id, sha256 = self.project.pk, prepared.sha256
        decoded = prepared.decoded
        file = storage.original_name_for(project_id, sha256, decoded.extension)
        thumb = storage.thumbnail_name_for(project_id, sha256)
        label = self._label(label_name) if label_name else None

        storage.write_file(file, pending.data)
        storage.write_file(thumb, prepared.thumbnail)
        try:
            with transaction.atomic():
                image = Image.objects.create(
                    project=self.project,
                    label=label,
                    file=file,
                    thumbnail=thumb,
                    original_name=pending.original_name,
                    sha256=sha256,
                    width=decoded.width,
                    height=decoded.height,
                    format=decoded.format,
                    size_bytes=len(pending.data),
                    labeled_at=timezone.now() if label else None,
                    labeled_by=self.user if label else None,
                )
        except IntegrityError:
            # The same file arrived twice at once; the other copy won and owns
            # the stored files, which hold the very same bytes.
            existing = self._find(sha256)
            if existing is None:
                self._discard(file, thumb)
                raise
            return self._duplicate(pending.name, existing, pending.data, label_name)
        except Exception:
            self._discard(file, thumb)
            raise

        return FileResult(
            pending.name,
            ACCEPTED,
            "; ".join(decoded.notes),
            image_id=image.pk,
            label=label.name if label else None,
        )

    def _duplicate(
        self, name: str, existing: Image, data: bytes, label_name: str | None
    ) -> FileResult:
        if existing.trashed_at is None:
            return FileResult(
                name,
                DUPLICATE,
                f"Already in the project as {existing.original_name}.",
                duplicate_of_id=existing.pk,
                label=existing.label.name if existing.label else None,
            )

        self._restore(existing, data, label_name)
        return FileResult(
            name,
            DUPLICATE,
            f"Same file as {existing.original_name}, which had been deleted: "
            f"restored it.",
            image_id=existing.pk,
            duplicate_of_id=existing.pk,
            label=existing.label.name if existing.label else None,
        )

    def _restore(self, image: Image, data: bytes, label_name: str | None) -> None:
        """Bring a deleted image back, re-writing its files if they are gone."""
        if not storage.media_path(image.file).exists():
            storage.write_file(image.file, data)
        if not storage.media_path(image.thumbnail).exists():
            decoded = decode_image(data, draft_size=_thumbnail_box())
            storage.write_file(image.thumbnail, make_thumbnail(decoded))

        image.trashed_at = None
        fields = ["trashed_at"]
        if label_name:
            image.label = self._label(label_name)
            image.labeled_at = timezone.now()
            image.labeled_by = self.user
            fields += ["label", "labeled_at", "labeled_by"]
        image.save(update_fields=fields)

    def _find(self, sha256: str) -> Image | None:
        return (
            Image.objects.filter(project=self.project, sha256=sha256)
            .select_related("label")
            .first()
        )

    def _label(self, name: str) -> Label:
        key = name_key(name)
        if key in self._labels:
            return self._labels[key]

        label = get_or_create_label(self.project, name)
        self._labels[key] = label
        return label

    def _discard(self, *relatives: str) -> None:
        """Remove files written for a row that was never saved."""
        images = Image.objects.filter(project=self.project)
        used = set(images.filter(file__in=relatives).values_list("file", flat=True))
        used |= set(
            images.filter(thumbnail__in=relatives).values_list("thumbnail", flat=True)
        )
        storage.delete_files([rel for rel in relatives if rel not in used])


def pending_from_path(
    path: Path, *, display_name: str, label_name: str | None = None
) -> PendingFile:
    """A file on disk, read unless it is too large or unreadable."""
    pending = PendingFile(display_name, path.name[:255], label_name)
    try:
        size = path.stat().st_size
        if size > settings.IMAGE_MAX_BYTES:
            pending.problem = _too_large(size)
        else:
            pending.data = path.read_bytes()
    except OSError as exc:
        pending.problem = f"The file cannot be read: {exc.strerror or exc}."
    return pending


def _thumbnail_box() -> tuple[int, int]:
    return (settings.THUMBNAIL_SIZE, settings.THUMBNAIL_SIZE)


def _zip_member_problem(info: zipfile.ZipInfo) -> str | None:
    if info.flag_bits & 0x1:
        return "This file is encrypted inside the archive."
    if info.file_size > settings.IMAGE_MAX_BYTES:
        return _too_large(info.file_size)
    if info.file_size > ZIP_RATIO_FROM_BYTES and info.file_size > ZIP_MAX_RATIO * max(
        info.compress_size, 1
    ):
        return (
            f"This file expands {info.file_size // max(info.compress_size, 1)} "
            f"times over when unpacked, which no photo does; it was not extracted."
        )
    return None


def _files_were(count: int) -> str:
    return "1 file was" if count == 1 else f"{count} files were"


def _clean_original_name(name: str) -> str:
    """The file name alone, without any folders, as a person would read it."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    return (name or "unnamed")[:255]


def _size_of(fileobj: IO[bytes]) -> int:
    size = getattr(fileobj, "size", None)
    if size is not None:
        return size
    position = fileobj.tell()
    fileobj.seek(0, io.SEEK_END)
    size = fileobj.tell()
    fileobj.seek(position)
    return size


def _too_large(size: int) -> str:
    return (
        f"The file is {_megabytes(size)}; files over "
        f"{_megabytes(settings.IMAGE_MAX_BYTES)} are refused."
    )


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"
