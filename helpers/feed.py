"""A day's new products (chapter 09): photo files in, seven tags with their confidence out, and the
review queue that decides which tags a person checks.

A feed is a folder of photos, flat or with sub-folders (one per class, say). ``list_feed`` takes every file
in it and names, with the reason, each entry it leaves out: hidden files (``.DS_Store``, ``._*``, our own
unfinished ``.part`` files), ``*.part`` downloads, symlinks that lead nowhere or to a folder, pipes.
``read_photo`` decodes a file the way a person sees it (``helpers.photos``) or flags it, never stopping
the feed: a damaged photo, a text file, a decompression bomb, a video named ``.jpg`` (only its first bytes
are read) are named by ``problem`` and skipped. File names need not be UTF-8.

Rows are keyed by the file's path inside the feed folder (``Shirts/1.png`` and ``Shoes/1.png`` are two
rows). A feed written by ``write_feed`` carries a manifest, ``feed_manifest.json``, giving each photo's
catalogue id and SHA-256, and ``feed_ids`` reads it: a file it does not list (a photo of your own, a
leftover) is an error naming the file, never a silent wrong row. The helpers work on any folder of
photos; only the comparisons with the catalogue (chapter 09's later cells) need those ids, so for your own
photos without ids stop at the tag table, or write them with ``write_feed`` and ids of your own.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import io
import json
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.metrics import precision_recall_curve

from helpers.catalogue import IMAGE_SIZE
from helpers.fashion_mnist import DataError, sha256_of
from helpers.paths import remove_stale_parts
from helpers.photos import decode_file, shown_path

MANIFEST = "feed_manifest.json"


@dataclass(frozen=True)
class Skipped:
    """An entry of the feed that is not tagged: its path inside the feed (printable), and why."""

    name: str
    reason: str
    path: Path = field(compare=False)


@dataclass
class Listing:
    """What ``list_feed`` found: the files to tag, in order, and every entry it left out."""

    folder: Path
    files: list[Path]
    skipped: list[Skipped]

    def tensor_paths(self) -> list[bytes]:
        """The files as bytes, for ``tf.data.Dataset.from_tensor_slices``: TensorFlow strings are bytes, and
        a name that is not UTF-8 (``caf\\xe9.png``) cannot pass as text. ``read_photo`` takes them back."""
        return [os.fsencode(path) for path in self.files]

    def name(self, path) -> str:
        """``path`` relative to the feed folder, printable whatever its bytes."""
        return shown_path(Path(os.fsdecode(path)).relative_to(self.folder).as_posix())

    def undecodable(self, ok) -> list[Skipped]:
        """The files flagged False by ``read_photo`` (``ok``, one flag per file), each with its problem."""
        ok = np.asarray(ok, bool)
        if ok.shape != (len(self.files),):
            raise ValueError(f"{ok.size} flags for {len(self.files)} files: pass read_photo's flag for each file.")
        return [Skipped(self.name(path), problem(path, self.name(path)), path)
                for path, flag in zip(self.files, ok, strict=True) if not flag]


def list_feed(folder) -> Listing:
    """The files to tag under ``folder`` (sub-folders included, sorted) and the entries left out, with why.

    Symlinks to files are followed; symlinks to folders are not (they could lead outside the feed, or in a
    circle). An empty feed is a ``DataError``: there is nothing to tag."""
    folder = Path(os.fsdecode(folder))
    if not folder.is_dir():
        raise FileNotFoundError(f"{shown_path(folder)} is not a folder: pass the folder that holds the feed's "
                                "photos.")
    files, skipped = [], []
    _walk(folder, folder, files, skipped)
    if not files:
        left_out = "".join(f"; {s.name}: {s.reason}" for s in skipped[:5])
        raise DataError(f"{shown_path(folder)} holds no file to tag{left_out}. Put the day's photos in it (flat "
                        "or in sub-folders).")
    return Listing(folder, sorted(files), sorted(skipped, key=lambda s: s.name))


def _walk(folder: Path, root: Path, files: list, skipped: list) -> None:
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError as err:
        skipped.append(Skipped(_relative(folder, root), f"a folder that cannot be read ({err.strerror})", folder))
        return
    for entry in entries:
        path = Path(entry.path)
        if entry.name == MANIFEST and folder == root:
            continue  # write_feed's record of the photos' catalogue ids, not a photo
        reason = _reason_to_skip(entry)
        if reason:
            skipped.append(Skipped(_relative(path, root), reason, path))
        elif entry.is_dir(follow_symlinks=False):
            _walk(path, root, files, skipped)
        else:
            files.append(path)


def _reason_to_skip(entry: os.DirEntry) -> str:
    """Why a feed entry is left out, or "" for a file to tag (or a folder to look in)."""
    kind = "folder" if entry.is_dir(follow_symlinks=False) else "file"
    if entry.name.startswith(".") and entry.name.endswith(".part"):
        return "a hidden unfinished file (.part): a write that is still running or was interrupted"
    if entry.name.startswith("."):
        return f"a hidden {kind}"
    if entry.name.lower().endswith(".part"):
        return "an unfinished download or copy (.part)"
    if entry.is_symlink():
        return _reason_to_skip_link(Path(entry.path))
    if kind == "file" and not entry.is_file(follow_symlinks=False):
        return "not a regular file (a pipe, socket or device)"
    return ""


def _reason_to_skip_link(path: Path) -> str:
    target = shown_path(os.readlink(path))
    try:
        path.stat()
    except OSError as err:
        if err.errno == errno.ELOOP:
            return f"a symlink loop (-> {target})"
        return f"a symlink to {target}, which cannot be reached ({err.strerror})"
    if path.is_dir():
        return f"a symlink to the folder {target}: linked folders are not followed; copy the photos into the feed"
    return "" if path.is_file() else "a symlink to something that is not a file (a pipe or device)"


def _relative(path: Path, root: Path) -> str:
    return shown_path(path.relative_to(root).as_posix())


def read_photo(path) -> tuple[np.ndarray, bool]:
    """The photo at ``path`` as uint8 (80, 60, 3) and True; black and False when it cannot be read or decoded
    (``problem`` says why). Never raises for a bad file. ``path`` may be bytes, as ``tf.numpy_function``
    passes strings, in any encoding the file system allows."""
    try:
        return decode_file(path, IMAGE_SIZE), True
    except DataError:
        return np.zeros((*IMAGE_SIZE, 3), np.uint8), False


def problem(path, where: str | None = None) -> str:
    """Why ``read_photo`` could not use ``path``, naming it as ``where`` (default: the whole path), or ""
    when it can. Reads no more of the file than ``read_photo`` does."""
    try:
        decode_file(path, IMAGE_SIZE, where)
    except DataError as err:
        return str(err)
    return ""


def tag_table(files, y_score: dict, names: dict, folder=None) -> pd.DataFrame:
    """One row per tagged file: its path inside ``folder`` (default: the folder all files share), then per
    head the most probable class and its probability."""
    paths = [Path(os.fsdecode(f)) for f in files]
    base = Path(os.fsdecode(folder)) if folder is not None else _shared_folder(paths)
    try:
        relative = [shown_path(p.relative_to(base).as_posix()) for p in paths]
    except ValueError as err:
        raise ValueError(f"{err}: pass the feed folder that holds every file as folder.") from err
    table = pd.DataFrame({"file": relative})
    for head, scores in y_score.items():
        scores = np.asarray(scores)
        if len(scores) != len(table):
            raise ValueError(f"{len(scores)} {head} scores for {len(table)} files.")
        table[head] = np.asarray(names[head], dtype=object)[scores.argmax(axis=1)]
        table[f"{head} confidence"] = scores.max(axis=1).astype(np.float32)
    return table


def _shared_folder(paths: list[Path]) -> Path:
    return Path(os.path.commonpath([str(p.parent) for p in paths])) if paths else Path()


def write_feed(images, ids, folder, extra: dict | None = None) -> Path:
    """Make ``folder`` hold exactly these photos: ``<id>.png`` for each image (lossless, so the pixels are the
    arrays' own), the ``extra`` files ({file name: bytes, or (bytes, catalogue id)}: photos in other forms,
    or broken files to show), and ``feed_manifest.json`` (each file's catalogue id and SHA-256).

    The folder is built anew beside ``folder`` and renamed into place, so no photo of another run
    survives and an interrupted write leaves the old feed whole. A folder that holds files but no manifest
    is not ours and is never replaced: that is an error. Ids are integers or names without a path."""
    folder, ids = Path(os.fsdecode(folder)), list(ids)
    names = [f"{_checked_id(image_id)}.png" for image_id in ids]
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim not in (3, 4) or len(images) != len(names):
        raise ValueError(f"images {images.dtype} {images.shape} must be uint8 photos, one per id ({len(names)}).")
    rows = {name: _plain_id(image_id) for name, image_id in zip(names, ids, strict=True)}
    if len(rows) < len(names):
        raise ValueError(f"ids repeat ({len(names) - len(rows)} times): each photo needs its own file name.")
    extra = _checked_extra(extra or {}, rows)
    _refuse_foreign(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_parts(folder.parent)  # feeds a killed run was building
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.{os.getpid()}-", suffix=".part", dir=folder.parent))
    try:
        staging.chmod(0o755)
        manifest = {}
        for image, name in zip(images, names, strict=True):
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format="PNG")
            manifest[name] = _write(staging / name, buffer.getvalue(), rows[name])
        for name, (payload, image_id) in extra.items():
            manifest[name] = _write(staging / name, payload, image_id)
        (staging / MANIFEST).write_text(json.dumps({"format": 1, "files": manifest}, indent=1))
        _swap_in(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def feed_ids(folder, files) -> np.ndarray:
    """The catalogue id of each of ``files`` (paths inside ``folder``), from the manifest ``write_feed`` wrote;
    a ``DataError`` naming the file when it has no id (not written by ``write_feed``, or an extra file
    without one) or when it changed since."""
    folder = Path(os.fsdecode(folder))
    manifest = _read_manifest(folder)
    ids = []
    for file in files:
        path = Path(os.fsdecode(file))
        name = path.relative_to(folder).as_posix() if path.is_relative_to(folder) else None
        row = manifest.get(name)
        if row is None:
            raise DataError(f"{shown_path(path)} is not in {shown_path(folder / MANIFEST)}, so it has no catalogue "
                            "id: write_feed did not write it (a photo of your own, or a leftover). Write the "
                            "feed again with write_feed, or compare only the files it wrote.")
        if row["id"] is None:
            raise DataError(f"{shown_path(path)} was added to the feed without a catalogue id (write_feed's extra); "
                            "give it one as (bytes, id), or leave it out of the comparison.")
        if sha256_of(path) != row["sha256"]:
            raise DataError(f"{shown_path(path)} changed after write_feed wrote it (its SHA-256 differs from "
                            f"{MANIFEST}): run the cell that writes the feed again.")
        ids.append(row["id"])
    return np.asarray(ids) if ids else np.zeros(0, np.int64)


def _checked_id(image_id) -> str:
    if isinstance(image_id, int | np.integer) and not isinstance(image_id, bool):
        return str(int(image_id))
    if isinstance(image_id, str) and _is_plain_name(image_id):
        return image_id
    raise ValueError(f"id {image_id!r} cannot name a file: use integers, or names without '/', '\\\\', a "
                     "leading '.' or '..'.")


def _plain_id(image_id):
    return int(image_id) if isinstance(image_id, int | np.integer) else image_id


def _is_plain_name(name: str) -> bool:
    return bool(name) and not name.startswith(".") and not any(c in name for c in "/\\\0") and name != MANIFEST


def _checked_extra(extra: dict, photos: dict) -> dict:
    checked = {}
    for name, value in extra.items():
        name = os.fsdecode(name)
        payload, image_id = value if isinstance(value, tuple) else (value, None)
        if name in ("", ".", "..", MANIFEST) or any(c in name for c in "/\\\0") or name in photos:
            raise ValueError(f"extra file name {name!r} must be a plain file name, not {MANIFEST} nor a photo's "
                             "<id>.png.")
        if not isinstance(payload, bytes):
            raise ValueError(f"extra file {name!r}: give its content as bytes, not {type(payload).__name__}.")
        checked[name] = (payload, None if image_id is None else _plain_id(image_id))
    return checked


def _write(path: Path, payload: bytes, image_id) -> dict:
    path.write_bytes(payload)
    return {"id": image_id, "sha256": hashlib.sha256(payload).hexdigest()}


def _refuse_foreign(folder: Path) -> None:
    """Raise unless ``folder`` is absent, empty, or a feed ``write_feed`` wrote (it holds the manifest)."""
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise DataError(f"{shown_path(folder)} is not a folder write_feed made (a file or a symlink); pass "
                        "another folder for the feed.")
    if folder.is_dir() and not (folder / MANIFEST).is_file() and any(folder.iterdir()):
        raise DataError(f"{shown_path(folder)} holds files but no {MANIFEST}, so write_feed did not make it, and "
                        "it never replaces a folder of yours: pass another folder, or move the files elsewhere "
                        "(delete it if it is a feed an earlier version of chapter 09 wrote).")


def _swap_in(staging: Path, folder: Path) -> None:
    """Rename the finished ``staging`` folder onto ``folder``; the old feed is deleted only afterwards."""
    old = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:12]}.old")
    if folder.exists():
        _refuse_foreign(folder)
        os.replace(folder, old)
    try:
        os.replace(staging, folder)
    except OSError as err:
        if old.exists():
            os.replace(old, folder)
        if err.errno in (errno.ENOTEMPTY, errno.EEXIST):
            raise DataError(f"{shown_path(folder)} was written by another run at the same time; run one at a "
                            "time.") from err
        raise
    for leftover in [old, *folder.parent.glob(f".{glob.escape(folder.name)}.*.old")]:  # and an interrupted run's
        shutil.rmtree(leftover, ignore_errors=True)


def _read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    if not path.is_file():
        raise DataError(f"{shown_path(folder)} has no {MANIFEST}, so its photos have no catalogue ids (photos of "
                        "your own?). list_feed, read_photo and tag_table work on any folder; comparing with the "
                        "catalogue needs a feed written by write_feed.")
    try:
        record = json.loads(path.read_text())
        return {name: {"id": row["id"], "sha256": row["sha256"]} for name, row in record["files"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise DataError(f"{shown_path(path)} is damaged ({err}): run the cell that writes the feed again.") from err


def review_curve(confidence, correct) -> pd.DataFrame:
    """Accept a tag when its confidence reaches a threshold, send the rest to a person: for each threshold,
    the share of tags accepted (``coverage``) and the share of accepted tags that are right (``precision``),
    from scikit-learn's precision-recall curve (a right tag is a positive, its confidence the score)."""
    confidence, correct = np.asarray(confidence, float), np.asarray(correct, bool)
    if confidence.shape != correct.shape or confidence.ndim != 1:
        raise ValueError(f"confidence {confidence.shape} and correct {correct.shape} must be equal 1-d shapes.")
    precision, _, thresholds = precision_recall_curve(correct, confidence)
    ranked = np.sort(confidence)
    coverage = 1 - np.searchsorted(ranked, thresholds, side="left") / len(ranked)
    return pd.DataFrame({"threshold": thresholds, "coverage": coverage, "precision": precision[:-1]})


def review_threshold(confidence, correct, required: float = 0.99) -> float:
    """The lowest confidence threshold whose accepted tags (confidence at or above it) are at least
    ``required`` right, i.e. the most tags accepted at that precision; inf when no threshold reaches it
    (everything goes to a person)."""
    if not np.any(correct):
        return float("inf")
    curve = review_curve(confidence, correct)
    reaching = np.flatnonzero(curve["precision"].to_numpy() >= required)
    return float(curve["threshold"].iloc[reaching[0]]) if len(reaching) else float("inf")


def review_table(thresholds: dict, confidence: dict, correct: dict) -> pd.DataFrame:
    """Per head, on the feed: the threshold (chosen elsewhere), the share of tags accepted, how right they
    are, and how many of every 1,000 tags of that head (rows whose label is known) a person must check."""
    rows = {}
    for head, threshold in thresholds.items():
        accepted = np.asarray(confidence[head]) >= threshold
        right = np.asarray(correct[head], bool)
        rows[head] = {"threshold": threshold, "tags accepted": accepted.mean(),
                      "accepted tags right": right[accepted].mean() if accepted.any() else np.nan,
                      "all tags right": right.mean(),
                      "to check per 1,000": 1000 * (1 - accepted.mean())}
    return pd.DataFrame(rows).T
