"""Training data: AU labels from CSV tables, OpenFace output or GANimation's pickle, and a face dataset.

Labels are OpenFace intensities ``AUxx_r`` on the 0–5 scale in every file format; in memory they are
float vectors ``(17,)`` in ``[0, 1]`` (divided by 5 and clipped), in the order of
:data:`defgan_hf.aus.AU_NAMES`. Columns are always selected by name, never by position.

Label formats (:func:`read_au_labels`):

- **A table** ``*.csv``: a file column (the first of :data:`FILE_COLUMNS` present, case-insensitive)
  and ``AU01_r … AU45_r``; other columns are ignored. This is what ``defgan-annotate`` writes.
- **A folder of OpenFace CSVs**: OpenFace's ``FaceLandmarkImg`` writes ``NAME.csv`` for image
  ``NAME.<ext>`` with ``", "`` separators, spaces in the header and many other columns. Of several
  faces in one image, the one with the highest ``confidence`` labels the image (the first row when
  there is no ``confidence`` column). A CSV in the folder that has a file column is read as a table.
- **GANimation's** ``aus_openface.pkl``: a dict file stem → 17 values. Only dicts of numpy arrays are
  unpickled: anything else in the pickle (which could run code) is refused.

In CSVs, rows with ``success == 0`` are dropped when that column exists: OpenFace writes zeros for
every AU of a face it failed to track, which would teach the model a neutral face that is not there.

Data directory layouts (:func:`find_data_layout`; the first that matches wins):

1. ``aus.csv``: one table, as ``defgan-annotate OUT_DIR`` writes it.
2. ``aus_openface.pkl``: GANimation / ganimation_replicate.
3. ``processed/`` holding CSVs: OpenFace's output folder under its default name.
4. CSVs directly in the data directory: OpenFace's output written there.

Images are in ``imgs/`` when that folder exists, else in the data directory itself, searched
recursively (hidden files and folders skipped, files matched by :data:`IMAGE_EXTENSIONS`). Optional
``train_ids.csv`` / ``test_ids.csv`` (one id per line) in the data directory select a split.

Matching labels to images: a label key (or split id) names an image by its path relative to the image
folder, with or without the extension (``"a/b.jpg"`` or ``"a/b"``): GANimation's pickle and OpenFace
CSV folders are keyed by stem. Keys in a table may also start with the image folder's name
(``"imgs/b.jpg"``), i.e. be relative to the table's folder.
"""

from __future__ import annotations

import csv
import logging
import math
import pickle
import struct
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .aus import AU_NAMES, AU_SCALE, NUM_AUS
from .images import read_face_crop

logger = logging.getLogger(__name__)

FILE_COLUMNS: tuple[str, ...] = ("file", "filename", "file_name", "image", "image_name", "img", "path", "name")
"""Accepted names of a table's file column (case-insensitive), in order of preference."""

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".gif"}
)
"""Suffixes (lower case) of the files a dataset treats as images."""

# The names the data directory layouts use (module docstring); defgan-annotate writes IMAGE_FOLDER and TABLE_FILE.
IMAGE_FOLDER = "imgs"
TABLE_FILE = "aus.csv"
AU_COLUMNS: tuple[str, ...] = tuple(f"{name}_r" for name in AU_NAMES)
"""The AU intensity columns of :data:`TABLE_FILE` (OpenFace's names, its 0–5 scale), in ``AU_NAMES`` order."""
LANDMARKS_FILE = "landmarks.csv"
"""Beside :data:`TABLE_FILE`: each crop's head pose and face-mesh landmarks (:func:`read_landmarks`)."""
NUM_LANDMARKS: int = 478
"""Points of MediaPipe's face mesh."""
POSE_NAMES: tuple[str, ...] = ("yaw", "pitch", "roll")
GANIMATION_FILE = "aus_openface.pkl"
OPENFACE_FOLDER = "processed"


def _split_file_name(split: str) -> str:
    return f"{split}_ids.csv"


_SPLIT_FILES = frozenset(_split_file_name(split) for split in ("train", "test"))

# What Pillow raises on a corrupt, truncated or missing image file (struct.error comes from broken
# TIFF/BMP headers, DecompressionBombError from absurd sizes).
_IMAGE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, Image.DecompressionBombError)


class EmptyDatasetError(ValueError):
    """No usable (image, AU label) pair: no images, no labels, or none that match each other."""


# ---------------------------------------------------------------------------------------------------
# Labels


def read_au_labels(path: str | Path) -> dict[str, np.ndarray]:
    """Read AU labels from a table CSV, a folder of OpenFace CSVs or GANimation's ``aus_openface.pkl``.

    Args:
        path: a ``.csv`` table, a ``.pkl`` pickle, or a folder of CSVs (see the module docstring).
            In a folder, ``train_ids.csv`` / ``test_ids.csv`` are split files, not labels.

    Returns:
        image key → ``(17,)`` float32 AU vector in ``[0, 1]`` (file values ÷ 5, clipped), in the order
        of ``AU_NAMES``. Keys are as written in the file (tables) or file stems (folders, pickle).

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: on a missing AU or file column, an unreadable value, a key labelled twice, or an
            unsupported file type; the message names the file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"AU label file or folder {path} does not exist.")
    if path.is_dir():
        return _read_csv_folder(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        header, rows = _read_csv(path)
        file_column = _file_column(header)
        if file_column is None:
            raise ValueError(
                f"{path} has no file column: name the column of image file names one of "
                f"{', '.join(FILE_COLUMNS)} (an OpenFace CSV for one image belongs in a folder of such CSVs, "
                "named after its image)."
            )
        return _read_table(path, header, rows, file_column)
    if suffix in (".pkl", ".pickle"):
        return _read_ganimation_pickle(path)
    raise ValueError(f"Cannot read AU labels from {path}: expected a .csv table, a .pkl pickle or a folder of CSVs.")


def read_split_ids(path: str | Path) -> set[str]:
    """Read a GANimation split file (``train_ids.csv`` / ``test_ids.csv``): one image id per line.

    Returns:
        The ids (image paths relative to the image folder, with or without extension), stripped.
    """
    with open(path, encoding="utf-8-sig", newline="") as file:
        return {_normalise_key(row[0]) for row in csv.reader(file) if row and row[0].strip()}


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header (names stripped) and rows of a CSV; ``skipinitialspace`` reads OpenFace's ``", "``."""
    with open(path, encoding="utf-8-sig", newline="") as file:
        reader = csv.reader(file, skipinitialspace=True)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path} is empty: expected a header with AU01_r … AU45_r columns.")
        return [name.strip() for name in header], [row for row in reader if any(cell.strip() for cell in row)]


def _file_column(header: list[str]) -> int | None:
    lowered = [name.lower() for name in header]
    for name in FILE_COLUMNS:
        if name in lowered:
            return lowered.index(name)
    return None


def _optional_column(header: list[str], name: str) -> int | None:
    lowered = [column.lower() for column in header]
    return lowered.index(name) if name in lowered else None


def _au_columns(path: Path, header: list[str]) -> list[int]:
    """Positions of ``AU01_r … AU45_r`` in ``header``, in ``AU_NAMES`` order."""
    lowered = [name.lower() for name in header]
    wanted = list(AU_COLUMNS)
    missing = [name for name in wanted if name.lower() not in lowered]
    if missing:
        raise ValueError(
            f"{path} lacks the AU intensity column(s) {', '.join(missing)}: every AU label file needs "
            f"{', '.join(wanted)} on OpenFace's 0–5 scale (found columns: {', '.join(header[:30])}"
            f"{', …' if len(header) > 30 else ''})."
        )
    return [lowered.index(name.lower()) for name in wanted]


def _cell(path: Path, line: int, row: list[str], column: int, header: list[str]) -> float:
    try:
        value = float(row[column])
    except (IndexError, ValueError):
        cell = row[column] if column < len(row) else "nothing"
        raise ValueError(f"{path}, line {line}: column {header[column]} holds {cell!r}, not a number.") from None
    if math.isnan(value):
        raise ValueError(f"{path}, line {line}: column {header[column]} is NaN; label the image or drop the row.")
    return value


def _to_unit_range(values: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(values, dtype=np.float32) / AU_SCALE, 0.0, 1.0)


def _tracked_rows(path: Path, header: list[str], rows: list[list[str]]) -> list[tuple[int, list[str]]]:
    """``(line number, row)`` of the rows OpenFace tracked: all of them when there is no ``success`` column."""
    success = _optional_column(header, "success")
    numbered = [(index + 2, row) for index, row in enumerate(rows)]
    if success is None:
        return numbered
    tracked = [(line, row) for line, row in numbered if _cell(path, line, row, success, header) != 0]
    if len(tracked) < len(numbered):
        logger.warning("%s: dropped %d row(s) with success == 0.", path, len(numbered) - len(tracked))
    return tracked


def _read_table(path: Path, header: list[str], rows: list[list[str]], file_column: int) -> dict[str, np.ndarray]:
    au_columns = _au_columns(path, header)
    labels: dict[str, np.ndarray] = {}
    first_line: dict[str, int] = {}
    for line, row in _tracked_rows(path, header, rows):
        key = _normalise_key(row[file_column]) if file_column < len(row) else ""
        if not key:
            raise ValueError(f"{path}, line {line}: the {header[file_column]} column is empty.")
        if key in labels:
            raise ValueError(
                f"{path}: {key!r} is labelled twice (lines {first_line[key]} and {line}); keep one row per image."
            )
        labels[key] = _to_unit_range([_cell(path, line, row, column, header) for column in au_columns])
        first_line[key] = line
    return labels


def _read_openface_csv(path: Path, header: list[str], rows: list[list[str]]) -> np.ndarray | None:
    """The label of the face with the highest confidence in one image's OpenFace CSV; None if none was tracked."""
    au_columns = _au_columns(path, header)
    tracked = _tracked_rows(path, header, rows)
    if not tracked:
        logger.warning("%s: OpenFace tracked no face; its image stays unlabelled.", path)
        return None
    confidence = _optional_column(header, "confidence")
    if confidence is not None:
        # max() keeps the first of equal confidences, i.e. OpenFace's face 0.
        tracked = [max(tracked, key=lambda item: _cell(path, item[0], item[1], confidence, header))]
    line, row = tracked[0]
    return _to_unit_range([_cell(path, line, row, column, header) for column in au_columns])


def _read_csv_folder(folder: Path) -> dict[str, np.ndarray]:
    labels: dict[str, np.ndarray] = {}
    for path in sorted(folder.glob("*.csv")):
        if path.name in _SPLIT_FILES:
            continue
        header, rows = _read_csv(path)
        file_column = _file_column(header)
        if file_column is not None:
            found = _read_table(path, header, rows, file_column)
        else:
            label = _read_openface_csv(path, header, rows)
            found = {} if label is None else {path.stem: label}
        twice = sorted(found.keys() & labels.keys())
        if twice:
            raise ValueError(f"{path} labels {', '.join(map(repr, twice[:5]))} again; every image needs one label.")
        labels.update(found)
    return labels


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts of numpy arrays and nothing else, because a pickle can run arbitrary code."""

    _ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy.core.numeric", "_frombuffer"),
        ("_codecs", "encode"),
        ("collections", "OrderedDict"),
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(
                f"refusing {module}.{name}: only a dict of numpy arrays is read from an AU label pickle."
            )
        return super().find_class(module, name)


def _read_ganimation_pickle(path: Path) -> dict[str, np.ndarray]:
    with open(path, "rb") as file:
        try:
            # latin1 reads numpy arrays pickled under Python 2, as GANimation's were.
            content = _ArrayUnpickler(file, encoding="latin1").load()
        except pickle.UnpicklingError as error:
            raise ValueError(f"{path}: {error}") from None
    if not isinstance(content, Mapping):
        raise ValueError(f"{path} holds a {type(content).__name__}; expected a dict: image stem → 17 AU values.")
    labels: dict[str, np.ndarray] = {}
    for key, values in content.items():
        values = np.asarray(values, dtype=np.float32)
        if values.shape != (NUM_AUS,):
            raise ValueError(
                f"{path}: {key!r} has AU values of shape {values.shape}; expected {NUM_AUS} values "
                f"({', '.join(AU_NAMES)}) on the 0–5 scale."
            )
        if np.isnan(values).any():
            raise ValueError(f"{path}: {key!r} has NaN AU values; label the image or remove it.")
        labels[_normalise_key(str(key))] = _to_unit_range(values)
    return labels


def _normalise_key(key: str) -> str:
    """Spell an image key as a relative POSIX path: trimmed, forward slashes, no leading ``./``."""
    key = key.strip().replace("\\", "/")
    while key.startswith("./"):
        key = key[2:]
    return key


# ---------------------------------------------------------------------------------------------------
# Face geometry


@dataclass(frozen=True)
class FaceGeometry:
    """The geometry of the faces of a data directory, one row per crop.

    Attributes:
        files: the crops' keys, as in :data:`TABLE_FILE` (paths under ``imgs/``).
        landmarks: ``(N, 478, 2)`` float32 face-mesh points ``(x, y)`` in pixels of the crop.
        pose: ``(N, 3)`` float32 head yaw, pitch and roll in degrees.
    """

    files: list[str]
    landmarks: np.ndarray
    pose: np.ndarray

    def index(self) -> dict[str, int]:
        """Crop key (normalised, as :func:`read_au_labels` keys labels) → row."""
        return {_normalise_key(file): row for row, file in enumerate(self.files)}


def au_table_header(*extra: str) -> list[str]:
    """The columns of :data:`TABLE_FILE` as written here: ``file``, :data:`AU_COLUMNS`, then ``extra``."""
    return ["file", *AU_COLUMNS, *extra]


def au_table_row(file: str, aus: Collection[float], *extra: object, digits: int = 3) -> list[str]:
    """One row of :data:`TABLE_FILE`: the crop's key, its AUs (in ``[0, 1]``) on OpenFace's 0–5 scale, then ``extra``."""
    return [file, *(f"{value * AU_SCALE:.{digits}f}" for value in aus), *map(str, extra)]


def landmark_table_header() -> list[str]:
    """The columns of :data:`LANDMARKS_FILE`: ``file``, ``yaw``, ``pitch``, ``roll``, ``x0, y0, … x477, y477``."""
    return ["file", *POSE_NAMES, *(f"{axis}{point}" for point in range(NUM_LANDMARKS) for axis in "xy")]


def read_landmarks(path: str | Path) -> FaceGeometry:
    """Read a :data:`LANDMARKS_FILE` as ``defgan-annotate`` writes it (columns by name).

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: on missing columns or values that are not numbers, naming the line.
    """
    path = Path(path)
    header, rows = _read_csv(path)
    names = landmark_table_header()
    missing = [name for name in names if name not in header]
    if missing:
        raise ValueError(f"{path} lacks the columns {missing[:5]}{' …' if len(missing) > 5 else ''}; write it with "
                         "defgan-annotate.")  # fmt: skip
    columns = [header.index(name) for name in names[1:]]
    files, values = [], np.empty((len(rows), len(columns)), dtype=np.float32)
    for line, row in enumerate(rows, start=2):
        try:
            values[len(files)] = [float(row[column]) for column in columns]
        except (ValueError, IndexError):
            raise ValueError(f"{path}, line {line}: a pose or landmark value is missing or not a number.") from None
        files.append(row[header.index("file")])
    values = values[: len(files)]
    return FaceGeometry(files, values[:, len(POSE_NAMES):].reshape(-1, NUM_LANDMARKS, 2), values[:, :len(POSE_NAMES)])


# ---------------------------------------------------------------------------------------------------
# Data directory layouts


@dataclass(frozen=True)
class DataLayout:
    """Where a data directory keeps its images, labels and split.

    Attributes:
        image_dir: folder searched recursively for images.
        labels: a table CSV, a GANimation pickle or a folder of OpenFace CSVs (:func:`read_au_labels`).
        split_ids: the ``{split}_ids.csv`` selecting a subset of the images, or None for all of them.
        landmarks: the :data:`LANDMARKS_FILE` beside the labels (:func:`read_landmarks`), or None.
    """

    image_dir: Path
    labels: Path
    split_ids: Path | None = None
    landmarks: Path | None = None


def find_data_layout(data_dir: str | Path, split: str | None = None) -> DataLayout:
    """Resolve a ``--data_dir`` into images, labels and split (the layouts are in the module docstring).

    Args:
        data_dir: the data directory.
        split: ``"train"`` or ``"test"`` (reads ``{split}_ids.csv`` in ``data_dir``), or None for all images.

    Raises:
        FileNotFoundError: if ``data_dir`` is not an existing folder, or ``split`` has no ids file.
        EmptyDatasetError: if no labels are found; the message counts the images that are there.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        what = "is a file, not a folder" if data_dir.exists() else "does not exist"
        raise FileNotFoundError(f"Data directory {data_dir} {what}: pass the folder holding the images and AU labels.")
    image_dir = data_dir / IMAGE_FOLDER if (data_dir / IMAGE_FOLDER).is_dir() else data_dir
    openface_dir = data_dir / OPENFACE_FOLDER
    if (data_dir / TABLE_FILE).is_file():
        labels = data_dir / TABLE_FILE
    elif (data_dir / GANIMATION_FILE).is_file():
        labels = data_dir / GANIMATION_FILE
    elif openface_dir.is_dir() and any(openface_dir.glob("*.csv")):
        labels = openface_dir
    elif any(path.name not in _SPLIT_FILES for path in data_dir.glob("*.csv")):
        labels = data_dir
    else:
        raise EmptyDatasetError(
            f"No labelled faces: found {_count(len(_list_images(image_dir)), 'image')} and no AU labels in {data_dir}: "
            f"expected {TABLE_FILE} (as defgan-annotate writes it), {GANIMATION_FILE}, or OpenFace CSVs in "
            f"{OPENFACE_FOLDER}/ or in the folder itself."
        )
    split_ids = None
    if split is not None:
        split_ids = data_dir / _split_file_name(split)
        if not split_ids.is_file():
            raise FileNotFoundError(
                f"Split {split!r} needs {split_ids}, which does not exist; use all images (no split) or write one "
                "image id per line there."
            )
    landmarks = data_dir / LANDMARKS_FILE if (data_dir / LANDMARKS_FILE).is_file() else None
    return DataLayout(image_dir=image_dir, labels=labels, split_ids=split_ids, landmarks=landmarks)




def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _list_images(image_dir: Path) -> list[str]:
    """Image paths relative to ``image_dir`` (POSIX, sorted), skipping hidden files and folders."""
    return sorted(
        path.relative_to(image_dir).as_posix()
        for path in image_dir.rglob("*")
        if path.suffix.lower() in IMAGE_EXTENSIONS
        and not any(part.startswith(".") for part in path.relative_to(image_dir).parts)
        and path.is_file()
    )


# ---------------------------------------------------------------------------------------------------
# Images and the dataset


def augment_face(image: torch.Tensor, generator: torch.Generator | None = None,
                 landmarks: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:  # fmt: skip
    """A random small similarity transform and colour change of one face crop, neither of which changes its AUs.

    On a small dataset the critic learns each training face's AUs by heart within a few hundred steps, and
    the gradient it then gives the generators says little about expressions; these jitters make it read
    the face instead. The transform scales by up to ±5 %, rotates by up to ±6° and shifts by up to ±4 % of
    the side (border pixels repeated); the colour change scales brightness, contrast and saturation by up
    to ±20 % and, one time in ten, makes the face grey (some training sources are greyscale).

    Args:
        image: ``(3, S, S)`` RGB in ``[-1, 1]``.
        generator: random numbers (default: torch's global generator).
        landmarks: ``(L, 2)`` points of the face in pixels of the crop, moved with it; or None.

    Returns:
        ``(3, S, S)`` RGB in ``[-1, 1]``, and the moved landmarks (None if none were given).
    """
    scale, angle, shift_x, shift_y, brightness, contrast, saturation, grey = torch.rand(8, generator=generator)
    scale = 1.0 + 0.1 * (scale - 0.5)
    angle = math.radians(12.0 * (angle - 0.5))
    cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
    theta = torch.tensor([[cos, -sin, 0.08 * (shift_x - 0.5)], [sin, cos, 0.08 * (shift_y - 0.5)]])
    grid = torch.nn.functional.affine_grid(theta[None], [1, *image.shape], align_corners=False)
    image = torch.nn.functional.grid_sample(image[None], grid, padding_mode="border", align_corners=False)[0]
    if landmarks is not None:
        # The output pixel u reads the input at θ·(u, 1) (normalised, align_corners=False): a point at v in
        # the input is seen at θ_A⁻¹ (v − θ_t) in the output.
        size = image.shape[-1]
        normalised = (2.0 * landmarks.double() + 1.0) / size - 1.0
        moved = (normalised - theta[:, 2].double()) @ torch.linalg.inv(theta[:, :2].double()).T
        landmarks = (((moved + 1.0) * size - 1.0) / 2.0).to(landmarks.dtype)

    rgb = (image + 1.0) / 2.0
    rgb = rgb * (0.8 + 0.4 * brightness)
    mean = rgb.mean()
    rgb = (rgb - mean) * (0.8 + 0.4 * contrast) + mean
    luma = (0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])[None]
    rgb = luma + (rgb - luma) * (0.0 if grey < 0.1 else 0.8 + 0.4 * saturation)
    return rgb.clamp(0.0, 1.0) * 2.0 - 1.0, landmarks


def mirror_face(image: torch.Tensor, landmarks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A face crop ``(3, S, S)`` flipped left-right, with its landmarks ``(L, 2)`` in crop pixels (a new tensor)."""
    landmarks = landmarks.clone()
    landmarks[:, 0] = image.shape[-1] - 1 - landmarks[:, 0]
    return image.flip(-1), landmarks


class FaceItem(NamedTuple):
    """One training face (batched by a DataLoader into the same fields with a batch dimension first).

    Attributes:
        image: ``(3, S, S)`` float32 RGB in ``[-1, 1]``.
        aus: ``(17,)`` float32 in ``[0, 1]``, in the order of ``AU_NAMES``.
        landmarks: ``(478, 2)`` float32 face-mesh points in pixels of the ``S``-pixel crop, moved with the
            image by the flip and the augmentation; NaN where the data has no ``landmarks.csv`` row.
        mirrored: ``()`` bool, whether the image was flipped left-right (the landmarks' indices then name
            the other side of the face).
    """

    image: torch.Tensor
    aus: torch.Tensor
    landmarks: torch.Tensor
    mirrored: torch.Tensor


class FaceAUDataset(Dataset[FaceItem]):
    """Face images with their AU labels (and, where the data has them, landmarks): :class:`FaceItem` items.

    Only images that have a label are items; unlabelled images and labels without an image are counted
    (:meth:`summary`). An image that cannot be read when loaded (corrupt, truncated, deleted) is
    skipped: the item is replaced by the next readable one, so an epoch never stops and batches keep
    their size. Skipped images are marked in shared memory, so :attr:`num_skipped` and
    :attr:`skipped_files` count them from the main process also when DataLoader workers found them,
    and later epochs skip them without opening them again.

    Items are :class:`FaceItem`: ``(image, aus, landmarks, mirrored)``.
    """

    def __init__(
        self,
        image_dir: str | Path,
        labels: Mapping[str, np.ndarray],
        resolution: int = 128,
        flip: bool = True,
        ids: Collection[str] | None = None,
        augment: bool = False,
        geometry: FaceGeometry | None = None,
    ) -> None:
        """
        Args:
            image_dir: folder searched recursively for images (:data:`IMAGE_EXTENSIONS`).
            labels: image key → ``(17,)`` AUs in ``[0, 1]``, as :func:`read_au_labels` returns; keys are
                paths relative to ``image_dir``, with or without extension.
            resolution: side of the square images returned.
            flip: randomly mirror images left-right (probability 0.5); AU intensities are unchanged
                because the AU vector has no side.
            ids: keep only the images these ids name (a split), matched like label keys; None keeps all.
            augment: apply :func:`augment_face` to every image read.
            geometry: the faces' landmarks (:func:`read_landmarks`), keyed like the labels, in pixels of the
                crops on disk; None for none (items' landmarks are then NaN).

        Raises:
            FileNotFoundError: if ``image_dir`` is not a folder.
            EmptyDatasetError: if no image has a label; the message says what was found.
        """
        self.image_dir = Path(image_dir)
        if not self.image_dir.is_dir():
            raise FileNotFoundError(f"Image folder {self.image_dir} does not exist.")
        self.resolution = resolution
        self.flip = flip
        self.augment = augment
        self.split_size = None if ids is None else len(ids)

        keys = {_normalise_key(key): key for key in labels}
        wanted = None if ids is None else {_normalise_key(key) for key in ids}
        images = _list_images(self.image_dir)
        matched: list[tuple[str, str]] = []
        self.unlabelled_images: list[str] = []
        self.num_outside_split = 0
        used_keys: set[str] = set()
        for image in images:
            stem = PurePosixPath(image).with_suffix("").as_posix()
            key = image if image in keys else stem if stem in keys else None
            if key is not None:
                used_keys.add(key)
            if wanted is not None and image not in wanted and stem not in wanted:
                self.num_outside_split += 1
            elif key is None:
                self.unlabelled_images.append(image)
            else:
                matched.append((image, keys[key]))
        self.labels_without_image: list[str] = sorted(keys.keys() - used_keys)
        self.num_images_found = len(images)
        self.num_labels_found = len(keys)

        if not matched:
            raise EmptyDatasetError(self._nothing_usable_message(images, sorted(keys)))
        self.files: list[str] = [image for image, _ in matched]
        self.aus = torch.from_numpy(np.stack([np.asarray(labels[key], dtype=np.float32) for _, key in matched]))
        self.landmarks = torch.full((len(matched), NUM_LANDMARKS, 2), float("nan"))
        if geometry is not None:
            rows = geometry.index()
            with Image.open(self.image_dir / self.files[0]) as first:
                factor = resolution / first.width  # every crop of one annotation has one size
            for position, (_, key) in enumerate(matched):
                row = rows.get(_normalise_key(key))
                if row is not None:
                    self.landmarks[position] = (torch.from_numpy(geometry.landmarks[row]) + 0.5) * factor - 0.5
        self.num_with_landmarks = int(torch.isfinite(self.landmarks[:, 0, 0]).sum())
        # Shared memory: DataLoader workers mark failures where the main process can count them.
        self._failed = torch.zeros(len(self.files), dtype=torch.bool).share_memory_()
        logger.info("%s", self.summary())

    @classmethod
    def from_data_dir(
        cls, data_dir: str | Path, resolution: int = 128, flip: bool = True, split: str | None = None,
        augment: bool = False,
    ) -> FaceAUDataset:
        """Build the dataset of a data directory in any layout of the module docstring.

        Args:
            data_dir: e.g. the ``OUT_DIR`` of ``defgan-annotate``, or a GANimation data folder.
            resolution, flip, augment: as in the constructor.
            split: ``"train"`` or ``"test"`` to keep the images listed in ``{split}_ids.csv``; None keeps all.

        Raises:
            FileNotFoundError: if ``data_dir`` is not a folder, or the split has no ids file.
            EmptyDatasetError: if no image has a label; the message says what was found where.
        """
        layout = find_data_layout(data_dir, split)
        prefix = "" if layout.image_dir == Path(data_dir) else f"{IMAGE_FOLDER}/"

        def relative_to_images(key: str) -> str:
            key = _normalise_key(key)
            return key[len(prefix) :] if prefix and key.startswith(prefix) else key

        labels = {relative_to_images(key): aus for key, aus in read_au_labels(layout.labels).items()}
        geometry = None
        if layout.landmarks is not None:
            geometry = read_landmarks(layout.landmarks)
            geometry = FaceGeometry([relative_to_images(file) for file in geometry.files], geometry.landmarks,
                                    geometry.pose)  # fmt: skip
        ids = None
        if layout.split_ids is not None:
            ids = {relative_to_images(key) for key in read_split_ids(layout.split_ids)}
        try:
            return cls(layout.image_dir, labels, resolution=resolution, flip=flip, ids=ids, augment=augment,
                       geometry=geometry)
        except EmptyDatasetError as error:
            raise EmptyDatasetError(f"{error} (labels read from {layout.labels})") from None

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> FaceItem:
        """The item at ``index``, or, if that image cannot be read, the next readable one (wrapping around).

        Raises:
            EmptyDatasetError: if no image of the dataset can be read.
        """
        last_error: Exception | None = None
        for offset in range(len(self.files)):
            position = (index + offset) % len(self.files)
            if self._failed[position]:
                continue
            try:
                image = read_face_crop(self.image_dir / self.files[position], self.resolution)
            except _IMAGE_ERRORS as error:
                self._failed[position] = True
                last_error = error
                logger.warning("Skipping unreadable image %s: %s", self.image_dir / self.files[position], error)
                continue
            landmarks, mirrored = self.landmarks[position].clone(), bool(self.flip and torch.rand(()) < 0.5)
            if mirrored:
                image, landmarks = mirror_face(image, landmarks)
            if self.augment:
                image, landmarks = augment_face(image, landmarks=landmarks)
            return FaceItem(image, self.aus[position].clone(), landmarks, torch.tensor(mirrored))
        raise EmptyDatasetError(
            f"None of the {len(self.files)} labelled images in {self.image_dir} can be read (last error: {last_error})."
        )

    @property
    def num_skipped(self) -> int:
        """How many images could not be read so far (in any worker of this process's DataLoaders)."""
        return int(self._failed.sum())

    @property
    def skipped_files(self) -> list[str]:
        """The images that could not be read so far, relative to ``image_dir``."""
        return [self.files[position] for position in self._failed.nonzero().flatten().tolist()]

    def summary(self) -> str:
        """One line for the training log: what was found, used and skipped."""
        parts = [
            f"{_count(len(self.files), 'labelled image')} in {self.image_dir}",
            f"{_count(len(self.unlabelled_images), 'image')} without a label",
            f"{_count(len(self.labels_without_image), 'label')} without an image",
        ]
        if self.split_size is not None:
            parts.append(f"{_count(self.num_outside_split, 'image')} outside the split")
        parts.append(f"{_count(self.num_skipped, 'unreadable image')} skipped")
        parts.append(f"landmarks for {self.num_with_landmarks} of them")
        return "; ".join(parts)

    def _nothing_usable_message(self, images: list[str], keys: list[str]) -> str:
        found = (
            f"No labelled faces: found {_count(len(images), 'image')} in {self.image_dir} "
            f"and {_count(len(keys), 'AU label')}"
        )
        if not images:
            return f"{found}: put the face images there ({', '.join(sorted(IMAGE_EXTENSIONS))})."
        if not keys:
            return f"{found}: label the images first, e.g. with defgan-annotate."
        if self.split_size is not None and self.num_outside_split == len(images):
            return f"{found}, but none of the images is among the {self.split_size} ids of the split."
        return (
            f"{found}, but no label names an image: labels look like {', '.join(map(repr, keys[:3]))}, images like "
            f"{', '.join(map(repr, images[:3]))}. Label keys must be image paths relative to {self.image_dir}, "
            "with or without the extension."
        )


# ---------------------------------------------------------------------------------------------------
# Pairs of video frames


MAX_FRAME_GAP: int = 60
"""Frames of a pair are at most this many frames apart (two seconds at 30 fps): the same face, lit alike."""

MAX_HEAD_MOTION: float = 0.012
"""Largest mean motion of the head's rigid points (:data:`RIGID_LANDMARKS`) between the frames of a pair, as a
fraction of the crop's side (1.5 px at 128 px): a head that turns shows and hides what no expression does."""

MIN_AU_CHANGE: float = 0.5
"""Smallest change of expression in a pair, ``Σ_k |y_k − x_k|`` on the 0–1 scale (about the median of nearby
frames' in talking-face videos): pairs that barely change teach nothing."""

RIGID_LANDMARKS: tuple[int, ...] = (33, 133, 263, 362, 168, 6, 197, 195)
"""Eye corners and the bridge of the nose: points no AU moves far, so their motion is the head's."""


class FramePair(NamedTuple):
    """Two frames of one video, batched like :class:`FaceItem`: ``source`` and ``target`` ``(3, S, S)`` in
    ``[-1, 1]``, their AUs ``(17,)`` in ``[0, 1]`` and landmarks ``(478, 2)`` in crop pixels, and ``mirrored``
    ``()`` bool (both flipped left-right together)."""

    source: torch.Tensor
    source_aus: torch.Tensor
    source_landmarks: torch.Tensor
    target: torch.Tensor
    target_aus: torch.Tensor
    target_landmarks: torch.Tensor
    mirrored: torch.Tensor


def frame_number(file: str) -> int | None:
    """The index of a video frame's crop, as ``defgan-annotate`` names it (``…/frame_<index>.png``); None for a photo."""
    stem = PurePosixPath(file).stem
    return int(stem[len("frame_"):]) if stem.startswith("frame_") and stem[len("frame_"):].isdigit() else None


def frame_pairs(files: list[str], landmarks: np.ndarray, aus: np.ndarray, crop_size: int) -> np.ndarray:
    """The ordered pairs of video frames that show one face changing expression, not the head moving.

    Two crops pair when they are frames of one video (one folder, :func:`frame_number`) at most
    :data:`MAX_FRAME_GAP` apart, their :data:`RIGID_LANDMARKS` moved by at most :data:`MAX_HEAD_MOTION` of the
    crop on average, and their AUs differ by at least :data:`MIN_AU_CHANGE`. Both orders are pairs.

    Args:
        files: crop keys, ``folder/frame_<index>.png``.
        landmarks: ``(N, ≥468, 2)`` in pixels of the ``crop_size``-pixel crops.
        aus: ``(N, 17)`` in ``[0, 1]``.
        crop_size: side of the crops.

    Returns:
        ``(P, 2)`` int64 rows ``(source, target)`` into ``files``.
    """
    numbers = [frame_number(file) for file in files]
    videos = [file.rsplit("/", 1)[0] if number is not None else None for file, number in zip(files, numbers)]
    order = sorted((i for i in range(len(files)) if videos[i] is not None), key=lambda i: (videos[i], numbers[i]))
    order = np.array(order, dtype=np.int64)
    if len(order) < 2:
        return np.zeros((0, 2), dtype=np.int64)
    video_ids = np.unique(np.array([videos[i] for i in order]), return_inverse=True)[1]
    frame_ids = np.array([numbers[i] for i in order])
    rigid = landmarks[order][:, list(RIGID_LANDMARKS)]
    change_aus = aus[order]
    pairs = []
    for shift in range(1, min(MAX_FRAME_GAP, len(order) - 1) + 1):
        first, second = np.arange(len(order) - shift), np.arange(shift, len(order))
        head = np.linalg.norm(rigid[second] - rigid[first], axis=2).mean(axis=1)
        keep = ((video_ids[first] == video_ids[second]) & (frame_ids[second] - frame_ids[first] <= MAX_FRAME_GAP)
                & (head <= MAX_HEAD_MOTION * crop_size)
                & (np.abs(change_aus[second] - change_aus[first]).sum(axis=1) >= MIN_AU_CHANGE))  # fmt: skip
        pairs.append(np.stack([order[first[keep]], order[second[keep]]], axis=1))
    forward = np.concatenate(pairs)
    return np.concatenate([forward, forward[:, ::-1]])


class FramePairDataset(Dataset[FramePair]):
    """Pairs of frames of one video (:func:`frame_pairs`) from a ``defgan-annotate`` folder: what a face looks
    like after an expression change, beside what it looked like before. Texture pretraining
    (:func:`defgan_hf.objective.texture_pretraining_objective`) warps the first frame by the landmarks' own
    motion and asks the texture generator for what the warp could not bring: the inside of an opening mouth,
    teeth, a closing lid.

    Items are :class:`FramePair`; both frames are flipped left-right together (probability 0.5).
    """

    def __init__(self, image_dir: str | Path, files: list[str], landmarks: np.ndarray, aus: np.ndarray,
                 resolution: int = 128, flip: bool = True) -> None:  # fmt: skip
        """
        Args:
            image_dir: folder the crop keys ``files`` are relative to.
            files, landmarks, aus: as :func:`frame_pairs` takes them, the landmarks in pixels of ``resolution``.
            resolution: side of the square images returned.
            flip: randomly mirror both frames of a pair left-right.

        Raises:
            EmptyDatasetError: if no two frames pair; the message says why frames pair.
        """
        self.image_dir, self.files, self.resolution, self.flip = Path(image_dir), files, resolution, flip
        self.pairs = frame_pairs(files, landmarks, aus, resolution)
        if len(self.pairs) == 0:
            raise EmptyDatasetError(
                f"No two of the {len(files)} faces in {self.image_dir} are frames of one video (crops named "
                f"folder/frame_<index>.png, as defgan-annotate names a video's frames) at most {MAX_FRAME_GAP} "
                f"frames apart, with the head still and the expression changing: annotate videos of faces."
            )
        self.landmarks = torch.from_numpy(landmarks.astype(np.float32))
        self.aus = torch.from_numpy(aus.astype(np.float32))
        logger.info("%s from %s", _count(len(self.pairs), "frame pair"), self.image_dir)

    @classmethod
    def from_data_dir(cls, data_dir: str | Path, resolution: int = 128, flip: bool = True) -> FramePairDataset:
        """The frame pairs of a ``defgan-annotate`` folder (``imgs/``, ``aus.csv``, ``landmarks.csv``).

        Raises:
            FileNotFoundError: if the folder has no ``landmarks.csv``.
            EmptyDatasetError: if no two frames pair.
        """
        from .motion import read_motion_data  # the motion model's reader: faces with AUs and landmarks

        data = read_motion_data(data_dir).at_size(resolution)
        return cls(Path(data_dir) / IMAGE_FOLDER, data.files, data.landmarks, data.aus, resolution=resolution,
                   flip=flip)  # fmt: skip

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> FramePair:
        mirrored = bool(self.flip and torch.rand(()) < 0.5)
        frames = []
        for row in self.pairs[index].tolist():
            image, landmarks = read_face_crop(self.image_dir / self.files[row], self.resolution), self.landmarks[row]
            if mirrored:
                image, landmarks = mirror_face(image, landmarks)
            frames.append((image, self.aus[row].clone(), landmarks))
        return FramePair(*frames[0], *frames[1], torch.tensor(mirrored))


# ---------------------------------------------------------------------------------------------------
# Training targets


def sample_target_aus(aus: torch.Tensor, generator: torch.Generator | None = None, noise: float = 0.1,
                      single_au_fraction: float = 0.0) -> torch.Tensor:
    """Target AUs for training: the AUs of another sample of the batch, jittered; or one AU changed.

    As in GANimation: each image gets the AU vector of a randomly chosen other image (here a random
    permutation of the batch), plus uniform noise ``U(−noise, noise)``, clipped to ``[0, 1]``. With a
    batch of one, the target is the image's own AUs plus noise.

    With ``single_au_fraction`` > 0 (not in the paper), that fraction of the images instead keep their
    own AUs but one, drawn at random, which gets a value drawn from ``U(0, 1)``. Real AU vectors change
    many correlated AUs at once (a smile raises AU06, AU12 and often AU25 together), so generators trained
    only on them learn edits that drag the correlated AUs along; one-AU targets make the expression loss
    ask for one AU to change and every other to stay, which is what a per-AU slider asks for.

    Args:
        aus: ``(N, 17)`` source AUs in ``[0, 1]``.
        generator: random generator for reproducible targets; torch's global one if None.
        noise: half-width of the uniform noise, ``>= 0``.
        single_au_fraction: probability, per image, of a one-AU target, in ``[0, 1]``.

    Returns:
        ``(N, 17)`` target AUs in ``[0, 1]``, same dtype and device as ``aus``.
    """
    if aus.ndim != 2 or aus.shape[1] != NUM_AUS:
        raise ValueError(f"aus must have shape (N, {NUM_AUS}), got {tuple(aus.shape)}.")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}.")
    if not 0.0 <= single_au_fraction <= 1.0:
        raise ValueError(f"single_au_fraction must be in [0, 1], got {single_au_fraction}.")
    # Draw on the generator's device (a CPU generator cannot fill a CUDA tensor), then move.
    device = aus.device if generator is None else generator.device

    def uniform(*shape: int) -> torch.Tensor:
        return torch.rand(shape, generator=generator, device=device, dtype=aus.dtype).to(aus.device)

    permutation = torch.randperm(aus.shape[0], generator=generator, device=device).to(aus.device)
    targets = (aus[permutation] + (2.0 * uniform(*aus.shape) - 1.0) * noise).clamp(0.0, 1.0)
    if single_au_fraction == 0.0:
        return targets
    rows = torch.arange(aus.shape[0], device=aus.device)
    changed = torch.randint(NUM_AUS, (aus.shape[0],), generator=generator, device=device).to(aus.device)
    one_au = aus.clone()
    one_au[rows, changed] = uniform(aus.shape[0])
    return torch.where(uniform(aus.shape[0], 1) < single_au_fraction, one_au, targets)
