"""``defgan-annotate``: turn a folder of photos and videos into a DefGAN training set.

For every image (and every k-th frame of every video) under ``IMAGES_DIR``: detect the largest face,
cut the aligned crop (:func:`defgan_hf.face.align_face`), estimate its 17 AU intensities
(:func:`estimate_aus`), and write

- ``OUT_DIR/imgs/<path>.png``: the crops, mirroring the input folders (a video's frames go to
  ``OUT_DIR/imgs/<video path>/frame_<index>.png``);
- ``OUT_DIR/aus.csv``: a ``file`` column (the crop's path under ``imgs/``), then ``AU01_r … AU45_r`` on
  OpenFace's 0–5 scale, then ``source`` (the input file): what :func:`defgan_hf.data.read_au_labels`
  reads;
- ``OUT_DIR/landmarks.csv``: ``file``, the head pose (``yaw``, ``pitch``, ``roll`` in degrees), then
  the 478 face-mesh landmarks ``x0, y0, … x477, y477`` in pixels of the crop: the face's geometry, from
  which :mod:`defgan_hf.motion` learns what each AU does (:func:`defgan_hf.data.read_landmarks` reads it);
- ``OUT_DIR/failed.csv``: ``file``, ``reason`` for each input that failed in this run (not an image,
  truncated, no face…). The run goes on past failures and exits with 0.

A second run into the same ``OUT_DIR`` skips the inputs already in ``aus.csv`` and retries the others.

AU estimates come from :func:`defgan_hf.au_estimation.estimate_aus` (MediaPipe's blendshapes, and
landmarks where no blendshape measures the AU).
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from .au_estimation import estimate_aus
from .data import IMAGE_FOLDER, LANDMARKS_FILE, TABLE_FILE, au_table_header, au_table_row, landmark_table_header
from .face import NoFaceError, align_face, detect_face
from .images import load_image

FAILED_FILE = "failed.csv"

VIDEO_EXTENSIONS: frozenset[str] = frozenset({".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"})
"""Suffixes (lower case) of the files read as videos; every other file is tried as an image."""


@dataclass(frozen=True)
class _Row:
    """One face crop written: its path under imgs/, AUs in [0, 1], landmarks (478, 2) in crop pixels, pose."""

    crop: str
    aus: np.ndarray
    landmarks: np.ndarray
    pose: tuple[float, float, float]


@dataclass(frozen=True)
class _Job:
    source: Path
    key: str
    """``source`` relative to IMAGES_DIR, POSIX style: its name in the CSVs."""
    crop_folder: Path
    """``OUT_DIR/imgs``."""
    crop_stem: str
    """Path of its crop (or, for a video, folder of crops) under ``crop_folder``, without suffix."""
    size: int
    every_nth_frame: int


@dataclass
class _Outcome:
    key: str
    rows: list[_Row] = field(default_factory=list)
    failure: str | None = None


def _annotate_face(photo: Image.Image, crop_name: str, job: _Job) -> _Row:
    """Detect, crop and save the largest face of ``photo`` as ``imgs/<crop_name>``; its row of the tables."""
    face = detect_face(photo)
    path = job.crop_folder / crop_name
    path.parent.mkdir(parents=True, exist_ok=True)
    aligned = align_face(photo, face, job.size)
    aligned.image.save(path)
    return _Row(crop_name, estimate_aus(face), aligned.crop_landmarks, face.pose)


def _video_frames(path: Path, every_nth_frame: int) -> Iterator[tuple[int, Image.Image]]:
    """Every ``every_nth_frame``-th frame of a video (index, RGB image); raises OSError if it cannot be read."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise OSError("not a readable video")
    try:
        index = 0
        # grab() skips a frame without decoding it into an image.
        while capture.grab():
            if index % every_nth_frame == 0:
                ok, frame = capture.retrieve()
                if ok:
                    yield index, Image.fromarray(np.ascontiguousarray(frame[:, :, ::-1]))
            index += 1
    finally:
        capture.release()
    if index == 0:
        raise OSError("not a readable video (no frame could be decoded)")


def _annotate_file(job: _Job) -> _Outcome:
    """Annotate one input; every error becomes the outcome's failure, so that a batch never stops."""
    outcome = _Outcome(job.key)
    try:
        if job.source.suffix.lower() in VIDEO_EXTENSIONS:
            sampled = 0
            for index, frame in _video_frames(job.source, job.every_nth_frame):
                sampled += 1
                try:
                    outcome.rows.append(_annotate_face(frame, f"{job.crop_stem}/frame_{index:06d}.png", job))
                except NoFaceError:
                    continue  # videos often have frames without a face; only a video without any fails
            if not outcome.rows:
                outcome.failure = f"no face in any sampled frame ({sampled} sampled, one in {job.every_nth_frame})"
        else:
            outcome.rows.append(_annotate_face(load_image(job.source), f"{job.crop_stem}.png", job))
    except NoFaceError:
        outcome.failure = "no face found"
    except UnidentifiedImageError:
        outcome.failure = f"not an image (nor a video: {', '.join(sorted(VIDEO_EXTENSIONS))})"
    except OSError as error:
        outcome.failure = f"unreadable: {error}"
    except Exception as error:  # noqa: BLE001 - one bad file must not end a batch job; the reason is reported
        outcome.failure = f"{type(error).__name__}: {error}"
    return outcome


@dataclass(frozen=True)
class AnnotationReport:
    """What a run did: inputs annotated, crops written, failures (input → reason), inputs skipped as done."""

    annotated: int
    crops: int
    failed: dict[str, str]
    skipped: int


def _done_sources(table: Path) -> set[str]:
    if not table.exists():
        return set()
    with open(table, newline="", encoding="utf-8") as file:
        reader = csv.reader(file)
        header = next(reader, None)
        if header != au_table_header("source"):
            raise ValueError(
                f"{table} was not written by defgan-annotate (its columns differ), so this run cannot add to "
                "it: choose another --out folder, or remove the file to start over."
            )
        return {row[-1] for row in reader if row}


def _check_landmark_table(path: Path) -> None:
    """Refuse to append to a landmark table of another layout (a crop's row must line up with its header)."""
    if not path.exists():
        return
    with open(path, newline="", encoding="utf-8") as file:
        if next(csv.reader(file), None) != landmark_table_header():
            raise ValueError(
                f"{path} was not written by this version of defgan-annotate (its columns differ), so this run "
                "cannot add to it: choose another --out folder, or remove the file to start over."
            )


def annotate(images_dir: str | Path, out_dir: str | Path, size: int = 128, every_nth_frame: int = 1,
             workers: int = 1, progress: bool = True) -> AnnotationReport:  # fmt: skip
    """Annotate every image and video under ``images_dir`` into ``out_dir`` (see the module docstring).

    Args:
        images_dir: folder searched recursively (hidden files and ``out_dir`` are skipped).
        out_dir: output folder, created if needed; a previous run's results there are kept.
        size: side of the square crops in pixels.
        every_nth_frame: from videos, frames ``0, k, 2k, …``.
        workers: processes working in parallel (each loads its own face landmarker).
        progress: show a progress bar on stderr.

    Raises:
        NotADirectoryError: if ``images_dir`` is not a folder.
        ValueError: on a non-positive ``size``, ``every_nth_frame`` or ``workers``, or an ``aus.csv`` or
            ``landmarks.csv`` in ``out_dir`` that this tool did not write.
    """
    images_dir, out_dir = Path(images_dir), Path(out_dir)
    if not images_dir.is_dir():
        raise NotADirectoryError(f"{images_dir} is not a folder: give the folder that holds the photos and videos.")
    for name, value in (("size", size), ("every_nth_frame", every_nth_frame), ("workers", workers)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}.")
    table, failed_table, landmark_table = out_dir / TABLE_FILE, out_dir / FAILED_FILE, out_dir / LANDMARKS_FILE
    done = _done_sources(table)
    _check_landmark_table(landmark_table)

    failed: dict[str, str] = {}
    jobs: list[_Job] = []
    crop_owners: dict[str, str] = {}
    resolved_out = out_dir.resolve()
    for path in sorted(images_dir.rglob("*")):
        relative = path.relative_to(images_dir)
        if (not path.is_file() or any(part.startswith(".") for part in relative.parts)
                or resolved_out in path.resolve().parents):  # fmt: skip
            continue
        key = relative.as_posix()
        if key in done:
            continue
        crop_stem = relative.with_suffix("").as_posix()
        if crop_stem in crop_owners:
            failed[key] = f"its crops would overwrite those of {crop_owners[crop_stem]}: rename one of the two"
            continue
        crop_owners[crop_stem] = key
        jobs.append(_Job(path, key, out_dir / IMAGE_FOLDER, crop_stem, size, every_nth_frame))

    out_dir.mkdir(parents=True, exist_ok=True)
    crops = annotated = 0
    new_table, new_landmark_table = not table.exists(), not landmark_table.exists()
    with open(table, "a", newline="", encoding="utf-8") as table_file, \
            open(landmark_table, "a", newline="", encoding="utf-8") as landmark_file, \
            open(failed_table, "w", newline="", encoding="utf-8") as failed_file:  # fmt: skip
        table_writer, failed_writer = csv.writer(table_file), csv.writer(failed_file)
        landmark_writer = csv.writer(landmark_file)
        if new_table:
            table_writer.writerow(au_table_header("source"))
        if new_landmark_table:
            landmark_writer.writerow(landmark_table_header())
        failed_writer.writerow(["file", "reason"])
        for key, reason in failed.items():
            failed_writer.writerow([key, reason])
        outcomes = tqdm(_outcomes(jobs, workers), total=len(jobs), unit="file", desc="annotating", disable=not progress)
        for outcome in outcomes:
            if outcome.failure is not None:
                failed[outcome.key] = outcome.failure
                failed_writer.writerow([outcome.key, outcome.failure])
                failed_file.flush()
                continue
            for row in outcome.rows:
                table_writer.writerow(au_table_row(row.crop, row.aus, outcome.key))
                landmark_writer.writerow([row.crop, *(f"{angle:.2f}" for angle in row.pose),
                                          *(f"{value:.2f}" for value in row.landmarks.ravel())])
            # The landmarks first: a crop listed in aus.csv is done, so its landmarks must already be on disk.
            landmark_file.flush()
            table_file.flush()
            annotated += 1
            crops += len(outcome.rows)
    return AnnotationReport(annotated=annotated, crops=crops, failed=failed, skipped=len(done))


def _outcomes(jobs: list[_Job], workers: int) -> Iterator[_Outcome]:
    """Each job's outcome, in order: in this process for one worker, else in a pool of processes."""
    if workers == 1:
        yield from map(_annotate_file, jobs)
        return
    # Spawned, not forked, workers: MediaPipe's threads do not survive a fork.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        finished = 0
        try:
            for outcome in pool.map(_annotate_file, jobs):
                finished += 1
                yield outcome
        except BrokenProcessPool:
            # A worker died (killed, out of memory) and the pool's pending work with it: report, go on.
            for job in jobs[finished:]:
                yield _Outcome(job.key, failure="a worker process died while this file was pending; run again to retry")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``defgan-annotate IMAGES_DIR --out OUT_DIR [--size 128] [--every-nth-frame K] [--workers N]``."""
    parser = argparse.ArgumentParser(
        prog="defgan-annotate",
        description="Detect, align and crop the largest face of every image (and every k-th video frame) under "
        "IMAGES_DIR, estimate its 17 Action Units, and write OUT_DIR/imgs/ and OUT_DIR/aus.csv (OpenFace's "
        "AUxx_r columns, 0–5) for training. Failures are listed in OUT_DIR/failed.csv; re-running skips "
        "the files already annotated.",
    )
    parser.add_argument("images_dir", metavar="IMAGES_DIR", type=Path, help="folder of photos and videos (recursive)")
    parser.add_argument("--out", required=True, type=Path, metavar="OUT_DIR", help="output folder")
    parser.add_argument("--size", type=int, default=128, help="side of the face crops in pixels (default: 128)")
    parser.add_argument(
        "--every-nth-frame",
        type=int,
        default=1,
        metavar="K",
        help="from videos, annotate frames 0, K, 2K, … (default: 1, every frame)",
    )
    parser.add_argument("--workers", type=int, default=1, help="parallel processes (default: 1)")
    args = parser.parse_args(argv)
    try:
        report = annotate(args.images_dir, args.out, args.size, args.every_nth_frame, args.workers)
    except (NotADirectoryError, ValueError) as error:
        parser.error(str(error))
    print(
        f"{report.crops} face crops from {report.annotated} files written to {args.out / IMAGE_FOLDER}, labels in "
        f"{args.out / TABLE_FILE}; {len(report.failed)} files failed (listed in {args.out / FAILED_FILE}); "
        f"{report.skipped} files were already done.",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
