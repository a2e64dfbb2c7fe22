#!/usr/bin/env python
"""Train DefGAN, or its texture-only ablation (GANimation), with the paper's full objective.

    accelerate launch train_accelerate.py --data_dir DATA --output_dir OUT [--mixed_precision bf16] …

One *step* is one optimisation iteration: the critic is updated on every step, the generators on
every ``--critic_steps``-th step (the paper: 10). Each step consumes ``--gradient_accumulation_steps``
batches of ``--train_batch_size`` faces on every process.

The story: arguments → accelerator → data → models → optimisers → (resume) → loop → save.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import math
import os
import shlex
import shutil
import sys
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
from filelock import FileLock, Timeout
from torch import nn
from tqdm.auto import tqdm

from defgan_hf import DISCRIMINATOR_FOLDER, EXPRESSIONS, DefGAN, DeformationGenerator, Discriminator, TextureGenerator
from defgan_hf.data import LANDMARKS_FILE, FaceAUDataset, FramePair, FramePairDataset, sample_target_aus
from defgan_hf.images import read_face_crop
from defgan_hf.models.defgan import MOTION_FOLDER, with_au_modulation, with_field_composition
from defgan_hf.models.deformer import BOUNDS
from defgan_hf.models.hub import atomic_folder, push_folder, replace_folder
from defgan_hf.motion import MotionModel, fit_motion_data, read_motion_data
from defgan_hf.objective import (EditBatch, LossWeights, critic_objective, generator_objective,
                                 motion_pretraining_objective, texture_pretraining_objective)
from defgan_hf.visualize import sample_grid

logger = logging.getLogger("train_accelerate")

CHECKPOINT_PREFIX = "checkpoint-"
MODEL_FOLDER = "model"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_argument_group("data")
    data.add_argument("--data_dir", required=True,
                      help="Face crops with AU labels: aus.csv + imgs/ (defgan-annotate), OpenFace CSVs, or "
                           "GANimation's aus_openface.pkl + imgs/ (see defgan_hf.data).")
    data.add_argument("--resolution", type=int, default=128, help="Side of the square crops the networks see.")
    data.add_argument("--random_flip", action=argparse.BooleanOptionalAction, default=True,
                      help="Random horizontal flips (the AU vector is symmetric, so labels stay valid).")
    data.add_argument("--augment", action="store_true",
                      help="Random small similarity transforms and colour jitter (defgan_hf.data.augment_face), so "
                      "that the critic does not learn a small dataset's AUs by heart.")
    data.add_argument("--target_noise", type=float, default=0.1,
                      help="Target AUs are another sample's AUs plus U(-noise, noise), as in GANimation.")
    data.add_argument("--single_au_targets", type=float, default=0.0,
                      help="Fraction of targets that keep the face's own AUs but one, set to U(0, 1) (not in the "
                           "paper): teaches edits that change the requested AU alone, as the app's sliders ask.")
    data.add_argument("--dataloader_num_workers", type=int, default=2)

    run = parser.add_argument_group("run")
    run.add_argument("--output_dir", required=True,
                     help="Checkpoints, samples, logs and the Hub-ready model folder (OUTPUT_DIR/model).")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--train_batch_size", type=int, default=25, help="Faces per process per batch (paper: 25).")
    run.add_argument("--num_epochs", type=int, default=40, help="Paper: 40.")
    run.add_argument("--max_train_steps", type=int, default=None, help="If set, overrides --num_epochs.")
    run.add_argument("--gradient_accumulation_steps", type=int, default=1)
    run.add_argument("--mixed_precision", choices=["no", "fp16", "bf16"], default=None,
                     help="Defaults to accelerate's configuration; use 'no' on CPUs without bf16 instructions.")
    run.add_argument("--checkpointing_steps", type=int, default=500)
    run.add_argument("--checkpoints_total_limit", type=int, default=None, help="Keep only this many checkpoints.")
    run.add_argument("--resume_from_checkpoint", default=None,
                     help="A checkpoint folder, or 'latest' for the newest one in OUTPUT_DIR (none yet: start fresh).")
    run.add_argument("--logger", choices=["tensorboard", "trackio", "none"], default="tensorboard")
    run.add_argument("--logging_steps", type=int, default=10, help="Log losses every N steps.")
    run.add_argument("--sample_steps", type=int, default=500, help="Save and log a sample grid every N steps.")
    run.add_argument("--num_samples", type=int, default=8, help="Faces in each sample grid.")
    run.add_argument("--push_to_hub", action="store_true")
    run.add_argument("--hub_model_id", default=None, help="Repo id to push to (default: the output folder's name).")
    run.add_argument("--hub_token", default=None)

    model = parser.add_argument_group("model")
    model.add_argument("--pretrained_model", default=None,
                       help="Fine-tune from a DefGAN repo id or folder (generators and discriminator).")
    model.add_argument("--motion_model", default="auto", metavar="auto|none|PATH",
                       help="The motion model saved with the model (MODEL/motion/, see defgan_hf.motion). 'auto': "
                            "that of --pretrained_model if it has one, else fitted on --data_dir's landmarks.csv if "
                            "it has one (defgan-annotate writes it), else none. PATH: a model folder or repo with "
                            "motion/, or an annotated folder with landmarks.csv to fit it on.")
    model.add_argument("--motion_field_step", type=float, default=None, metavar="H",
                       help="Not in the paper: the motion model's per-AU fields that motion pretraining teaches are "
                            "the grid of a change of H of one AU, divided by H (one spline per AU, 7x the cost), "
                            "instead of the tangent at no change (0; the default of a new motion model), which "
                            "thickens closed lips asked to part. Saved with the motion model.")
    model.add_argument("--motion_spline_resolution", type=int, default=None, metavar="N",
                       help="Draw the motion model's grids and per-AU fields on an N x N lattice (default: the motion "
                            "model's own; one fitted here draws every two pixels, one saved before the setting "
                            "existed on 32 x 32). Saved with the motion model.")
    model.add_argument("--motion_smoothing", type=float, default=None, metavar="S",
                       help="Smoothing of the motion model's thin-plate spline (default: the motion model's own; 2e-3 "
                            "for one fitted here). Saved with the motion model.")
    model.add_argument("--texture_only", action="store_true",
                       help="The GANimation ablation: no deformation generator, everything else equal.")
    model.add_argument("--freeze_deformer", action="store_true",
                       help="Train the texture generator alone; the deformation generator keeps its weights (e.g. to "
                            "teach the texture longer with --lambda_mouth_interior without moving the motion learned).")
    model.add_argument("--identity_model", choices=["sface", "none"], default="sface",
                       help="Face-embedding network for the identity loss; 'none' disables the term.")
    model.add_argument("--generator_width", type=int, default=64)
    model.add_argument("--generator_res_blocks", type=int, default=6)
    model.add_argument("--discriminator_width", type=int, default=64)
    model.add_argument("--discriminator_layers", type=int, default=6)
    model.add_argument("--max_offset", type=float, default=5.0, help="Deformation bound in pixels (paper: 5).")
    model.add_argument("--conditioning", choices=["paper", "change"], default="paper",
                       help="What the generators are conditioned on: 'paper' (x and y for the deformer, y for the "
                            "texture) or 'change' (not in the paper: the texture also sees the AU change y − x; the "
                            "deformer sees the face alone and gives one field per AU, weighted by the change, so "
                            "that an edit that changes no AU moves nothing).")
    model.add_argument("--texture_upsampling", choices=["transposed", "bilinear"], default="transposed",
                       help="The texture generator's upsampling: the paper's transposed convolutions, or bilinear "
                            "upsampling + convolution (no checkerboard).")
    model.add_argument("--mask_regions", action="store_true",
                       help="Not in the paper: confine the attention mask to the face regions of the AUs that "
                            "change (defgan_hf.face_regions; needs landmarks.csv).")
    model.add_argument("--landmark_input", action="store_true",
                       help="Not in the paper: the deformation generator also reads the face's landmarks, drawn as "
                            "one map per face region (defgan_hf.face_regions.landmark_heatmaps; needs landmarks.csv), "
                            "so that it finds the features on new faces as the landmarker does. A pretrained "
                            "model keeps its own deformation generator's inputs.")
    model.add_argument("--inner_brow_combination", action="store_true",
                       help="Not in the paper: move the brows as FACS's 1+4 does (defgan_hf.aus.INNER_BROW_COMBINATION), "
                            "in the deformation generator's composition of its per-AU fields and in the motion "
                            "model that teaches it: the brow lowerer lowers the inner brows only beyond the inner "
                            "brow raiser, instead of cancelling its lift. Needs --conditioning change and "
                            "--landmark_input (or a pretrained deformation generator that has both).")
    model.add_argument("--arrival_steps", type=int, default=None, metavar="N",
                       help="Not in the paper: the deformation generator moves its summed per-AU offsets from where "
                            "the landmarks rest to where they arrive, in N fixed-point steps "
                            "(defgan_hf.models.deformer.arrival_offsets), as the motion model draws its grid. "
                            "Default: 0 for new networks, a pretrained model's own. Needs --conditioning change.")
    model.add_argument("--deformation_bound", choices=BOUNDS, default=None,
                       help="How the deformation generator's grid is held within --max_offset: tanh (the paper) or "
                            "clamp (as the motion model bounds its grid). Default: tanh for new networks, a "
                            "pretrained model's own. clamp needs --conditioning change.")
    model.add_argument("--au_modulation", action="store_true",
                       help="Also feed the AUs to the generators' normalisations after the bottleneck (not in the "
                            "paper; see defgan_hf.models.blocks.AUModulatedNorm; not the deformer's with "
                            "--conditioning change, which sees no AUs). With --pretrained_model it is added at "
                            "zero, so training starts from the pretrained model's exact edits.")

    optim = parser.add_argument_group("optimisation (paper §4.1)")
    optim.add_argument("--learning_rate", type=float, default=1e-4)
    optim.add_argument("--adam_beta1", type=float, default=0.5)
    optim.add_argument("--adam_beta2", type=float, default=0.999)
    optim.add_argument("--lr_decay_epochs", type=float, default=20,
                       help="The learning rate decays linearly to 0 over the last this many epochs.")
    optim.add_argument("--critic_steps", type=int, default=10, help="Critic updates per generator update.")
    optim.add_argument("--motion_pretraining_steps", type=int, default=0,
                       help="Not in the paper: the first N steps teach the deformation generator the motion model's "
                            "per-AU fields (supervised; needs --conditioning change and landmarks.csv), and the "
                            "adversarial objective starts after them (counted in --max_train_steps).")
    optim.add_argument("--texture_pretraining_steps", type=int, default=0,
                       help="Not in the paper: the N steps after motion pretraining teach the texture generator, "
                            "from pairs of video frames (--frame_pairs), what the landmarks' own motion leaves to "
                            "it: the first frame is warped to the second and the edit held to the second (counted "
                            "in --max_train_steps).")
    optim.add_argument("--frame_pairs", default=None, metavar="DIR",
                       help="A defgan-annotate folder of videos' frames (imgs/, aus.csv, landmarks.csv) whose frame "
                            "pairs texture pretraining learns from; e.g. the motion model's data.")

    weights = parser.add_argument_group("loss weights (paper appendix D.2; expression weights ÷ 25, see losses.py)")
    weights.add_argument("--lambda_gp", type=float, default=10.0)
    weights.add_argument("--lambda_critic", type=float, default=1.0)
    weights.add_argument("--lambda_expression_deformed", type=float, default=1000.0 / 25)
    weights.add_argument("--lambda_expression", type=float, default=4000.0 / 25)
    weights.add_argument("--lambda_expression_real", type=float, default=4000.0 / 25)
    weights.add_argument("--lambda_cycle", type=float, default=100.0)
    weights.add_argument("--lambda_identity", type=float, default=1.0)
    weights.add_argument("--lambda_composition", type=float, default=10.0)
    weights.add_argument("--lambda_grid_eye", type=float, default=0.1)
    weights.add_argument("--lambda_grid_tv", type=float, default=1e-5)
    weights.add_argument("--lambda_mask_eye", type=float, default=0.1)
    weights.add_argument("--lambda_mask_tv", type=float, default=1e-5)
    weights.add_argument("--lambda_motion_teacher", type=float, default=0.0,
                         help="Not in the paper: weight of the motion teacher, the deformation grid against the "
                              "motion model's grid for the same face and edit (pixels²; needs landmarks.csv).")
    weights.add_argument("--lambda_mouth_interior", type=float, default=0.0,
                         help="Not in the paper, motion pretraining only: where the edit opens the mouth (the lips' "
                              "inner edge moved by the motion model), the texture generator is taught the inside of a "
                              "mouth and its mask to open there, with this weight (0 leaves it out; needs "
                              "landmarks.csv).")
    weights.add_argument("--lambda_mask_margin", type=float, default=0.1,
                         help="Not in the paper, texture pretraining only: the mask learns to open where the texture "
                              "map beats the warp by more than this (mean L1 over the colours, on [-1, 1]).")

    args = parser.parse_args(argv)
    for name in ("train_batch_size", "gradient_accumulation_steps", "checkpointing_steps", "sample_steps",
                 "critic_steps", "logging_steps", "resolution"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}.")
    for name in ("motion_pretraining_steps", "texture_pretraining_steps"):
        if getattr(args, name) < 0:
            parser.error(f"--{name} must be at least 0, got {getattr(args, name)}.")
    if args.motion_field_step is not None and not 0.0 <= args.motion_field_step <= 1.0:
        parser.error(f"--motion_field_step must be in [0, 1] (AU units), got {args.motion_field_step}.")
    if args.motion_spline_resolution is not None and args.motion_spline_resolution < 2:
        parser.error(f"--motion_spline_resolution must be at least 2 (a lattice's side), got "
                     f"{args.motion_spline_resolution}.")
    if args.motion_smoothing is not None and args.motion_smoothing < 0:
        parser.error(f"--motion_smoothing must be at least 0, got {args.motion_smoothing}.")
    if args.texture_pretraining_steps > 0 and args.frame_pairs is None:
        parser.error("--texture_pretraining_steps learns from pairs of video frames: name a defgan-annotate folder "
                     "of videos with --frame_pairs.")
    if (args.inner_brow_combination and not args.pretrained_model and not args.texture_only
            and (args.conditioning != "change" or not args.landmark_input)):
        parser.error("--inner_brow_combination composes the deformation generator's per-AU fields on the face's "
                     "landmarks: add --conditioning change and --landmark_input.")
    if args.arrival_steps is not None and args.arrival_steps < 0:
        parser.error(f"--arrival_steps must be at least 0, got {args.arrival_steps}.")
    if (not args.pretrained_model and not args.texture_only and args.conditioning != "change"
            and (args.arrival_steps or args.deformation_bound == "clamp")):
        parser.error("--arrival_steps and --deformation_bound clamp act on the deformation generator's per-AU fields: "
                     "add --conditioning change.")
    if args.freeze_deformer and args.texture_only:
        parser.error("--freeze_deformer keeps the deformation generator as it is, but --texture_only has none.")
    if args.max_train_steps is None and args.num_epochs < 1:
        parser.error("give --num_epochs ≥ 1 or --max_train_steps.")
    if not Path(args.data_dir).is_dir():
        parser.error(f"--data_dir {args.data_dir} is not a folder; point it at a folder of face crops with AU labels.")
    return args


class TrainingState:
    """The step counter, saved and restored with every checkpoint."""

    def __init__(self) -> None:
        self.global_step = 0

    def state_dict(self) -> dict[str, int]:
        return {"global_step": self.global_step}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.global_step = int(state["global_step"])


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite: training stops without writing a checkpoint."""


def field_composition(args: argparse.Namespace) -> dict[str, bool | int | str]:
    """The deformation generator's field composition that the flags ask for (only the settings they give)."""
    given = {"inner_brow_combination": args.inner_brow_combination or None, "arrival_steps": args.arrival_steps,
             "bound": args.deformation_bound}  # fmt: skip
    return {name: value for name, value in given.items() if value is not None}


def build_models(args: argparse.Namespace) -> tuple[DefGAN, Discriminator]:
    """New networks at the requested sizes, or the networks of ``--pretrained_model``."""
    if args.pretrained_model:
        model = DefGAN.from_pretrained(args.pretrained_model)
        discriminator = Discriminator.from_pretrained(args.pretrained_model, subfolder=DISCRIMINATOR_FOLDER)
        if model.image_size != args.resolution or discriminator.image_size != args.resolution:
            raise SystemExit(f"--pretrained_model works on {model.image_size}px crops; pass --resolution "
                             f"{model.image_size}.")
        if args.texture_only and not model.texture_only:
            warnings.warn("--texture_only: the pretrained deformation generator is dropped.", stacklevel=2)
            model = DefGAN(model.texturer)
        if args.au_modulation:
            model = with_au_modulation(model)
        composition = field_composition(args)
        if composition and not model.texture_only:
            try:
                model = with_field_composition(model, **composition)
            except ValueError as error:
                flags = " ".join(f"--{'deformation_bound' if name == 'bound' else name}" for name in composition)
                raise SystemExit(f"{flags}: {error}") from None
        return model.train(), discriminator.train()
    generator_sizes = dict(image_size=args.resolution, width=args.generator_width,
                           num_res_blocks=args.generator_res_blocks, au_modulation=args.au_modulation,
                           conditioning=args.conditioning)  # fmt: skip
    # A change-conditioned deformation generator sees no AUs, so has nothing to modulate.
    deformer = None if args.texture_only else DeformationGenerator(
        **{**generator_sizes, "au_modulation": args.au_modulation and args.conditioning == "paper"},
        max_offset=args.max_offset, landmark_input=args.landmark_input,
        **field_composition(args))  # fmt: skip
    discriminator = Discriminator(image_size=args.resolution, width=args.discriminator_width,
                                  num_layers=args.discriminator_layers)
    texturer = TextureGenerator(**generator_sizes, upsampling=args.texture_upsampling)
    return DefGAN(texturer, deformer, mask_regions=args.mask_regions), discriminator


def build_motion_model(args: argparse.Namespace) -> MotionModel | None:
    """The motion model ``--motion_model`` names (see its help), at ``--resolution``, its per-AU fields and grids
    drawn with ``--motion_field_step``, ``--motion_spline_resolution`` and ``--motion_smoothing`` where they are given,
    moving the brows as FACS's 1+4 does with ``--inner_brow_combination``."""
    if args.motion_model == "none":
        return None
    drawing = {"field_step": args.motion_field_step, "spline_resolution": args.motion_spline_resolution,
               "smoothing": args.motion_smoothing}
    config = {name: value for name, value in drawing.items() if value is not None}
    if args.inner_brow_combination:
        config["inner_brow_combination"] = True
    candidates = [args.pretrained_model, args.data_dir] if args.motion_model == "auto" else [args.motion_model]
    for source in filter(None, candidates):
        if Path(source, LANDMARKS_FILE).is_file():
            try:
                motion_model = fit_motion_data(read_motion_data(source), image_size=args.resolution, **config)
            except ValueError as error:
                if args.motion_model != "auto":
                    raise SystemExit(f"--motion_model {source}: {error}") from None
                logger.warning("No motion model: %s", error)
                return None
            logger.info("Motion model fitted on %s; AUs fitted: %s; moved as FACS describes them: %s.", source,
                        ", ".join(motion_model.supported_aus), ", ".join(motion_model.prior_aus) or "none")
            return motion_model
        try:
            motion_model = MotionModel.from_pretrained(source, subfolder=MOTION_FOLDER, **config)
        except FileNotFoundError:
            continue
        if motion_model.image_size != args.resolution:
            raise SystemExit(f"The motion model of {source} works on {motion_model.image_size}px crops, the training "
                             f"on {args.resolution}px: fit one on the data with --motion_model DATA_DIR.")  # fmt: skip
        return motion_model
    if args.motion_model != "auto":
        raise SystemExit(f"--motion_model {args.motion_model} is neither a model with {MOTION_FOLDER}/ nor an "
                         f"annotated folder with {LANDMARKS_FILE}.")  # fmt: skip
    logger.info("No motion model: %s has no %s (annotate it with defgan-annotate to get one).", args.data_dir,
                LANDMARKS_FILE)
    return None


def build_identity_model(name: str, texture_only: bool) -> nn.Module | None:
    """The frozen face-embedding network ``E`` of the identity loss, or None when the term is off."""
    if texture_only:
        return None  # I*_y = I_x: the term is identically zero
    if name == "none":
        warnings.warn("--identity_model none: training without the face identity loss (paper Eq. 12).", stacklevel=2)
        return None
    from defgan_hf.identity import load_identity_model

    return load_identity_model(name).eval().requires_grad_(False)


RUN_LOCK = ".run-{rank}.lock"
"""The lock file of each process of the run that writes an output folder (with its holder's description)."""


def hold_output_dir(accelerator: Accelerator, output_dir: Path) -> FileLock:
    """Lock ``output_dir`` for this run, one lock per process rank, or stop every process with a message.

    The lock is the operating system's, on an open file: it dies with the process that holds it, however
    that process ends. Each rank takes its own, so workers that outlive a killed launcher still hold the
    folder against a new run, and the new run's processes agree (one all-reduce) before any of them stops.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / RUN_LOCK.format(rank=accelerator.process_index)
    lock, holder_file = FileLock(path, blocking=False), path.with_suffix(".holder")
    try:
        lock.acquire()
    except Timeout:
        holder = holder_file.read_text().strip() if holder_file.is_file() else "another process"
    else:
        holder = None
        holder_file.write_text(f"process {os.getpid()}: {shlex.join(sys.argv)}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    refused = accelerator.reduce(torch.tensor([float(holder is not None)], device=accelerator.device), "sum")
    if refused.item() > 0:
        raise SystemExit(f"{output_dir} is being written by a live training run ({holder or 'on another rank'}). "
                         "Stop that run (and its worker processes) first, or pass another --output_dir.")
    return lock


def learning_rate_factor(step: int, max_train_steps: int, decay_steps: int) -> float:
    """Constant, then linear decay to 0 over the last ``decay_steps`` steps (paper: the last 20 of 40 epochs)."""
    if decay_steps <= 0:
        return 1.0
    return min(1.0, max(0.0, (max_train_steps - step) / decay_steps))


def list_checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints (never the temporary folder of an interrupted save), oldest first."""
    found = [p for p in output_dir.glob(f"{CHECKPOINT_PREFIX}*") if p.is_dir() and p.name[len(CHECKPOINT_PREFIX):].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]))


def save_checkpoint(accelerator: Accelerator, output_dir: Path, step: int, total_limit: int | None) -> Path:
    """Write ``checkpoint-STEP`` atomically: into a temporary folder, renamed when complete."""
    final = output_dir / f"{CHECKPOINT_PREFIX}{step}"
    partial = output_dir / f".{final.name}.partial"
    if accelerator.is_main_process:
        shutil.rmtree(partial, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial))  # every process writes its own RNG state
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        replace_folder(partial, final)
        if total_limit is not None:
            for old in list_checkpoints(output_dir)[:-total_limit]:
                shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def save_model_folder(model: DefGAN, discriminator: Discriminator, folder: Path, card: dict[str, Any],
                      motion_model: MotionModel | None = None) -> None:  # fmt: skip
    """Write the Hub-ready folder atomically (:func:`~defgan_hf.models.hub.atomic_folder`)."""
    with atomic_folder(folder) as partial:
        model.save_pretrained(partial, discriminator=discriminator, motion_model=motion_model, model_card_kwargs=card)


def model_card(args: argparse.Namespace, dataset: FaceAUDataset, metrics: dict[str, float], step: int) -> dict[str, Any]:
    """Model-card fields describing this run: data, exact command, flags and final training losses."""
    flags = json.dumps({k: v for k, v in vars(args).items() if k != "hub_token"}, indent=1, sort_keys=True)
    losses = "\n".join(f"| {name} | {value:.4g} |" for name, value in sorted(metrics.items()))
    variant = "texture-only ablation (GANimation)" if args.texture_only else "DefGAN (motion + texture)"
    return {
        "model_name": f"{variant}, trained with defgan-hf",
        "training_data": f"Data: {args.data_dir} — {dataset.summary()}.\n\nTraining flags:\n\n```json\n{flags}\n```",
        "training_command": "accelerate launch train_accelerate.py " + shlex.join(sys.argv[1:]),
        "evaluation": (f"No held-out evaluation is run by the training script. Training losses after {step} "
                       f"steps (mean over the last logging window):\n\n| loss | value |\n|---|---|\n{losses}"),
    }


def _accumulate(logged: dict[str, torch.Tensor], terms: dict[str, torch.Tensor], micro_batches: int) -> None:
    """Add one micro-batch's loss terms (detached, no synchronisation) to a step's means."""
    for name, value in terms.items():
        logged[name] = logged.get(name, 0.0) + value.detach().float() / micro_batches


@dataclass
class Trainer:
    """The prepared networks and optimisers, and the two kinds of optimisation step of the paper."""

    args: argparse.Namespace
    accelerator: Accelerator
    model: DefGAN  # prepared (possibly wrapped for DDP)
    discriminator: Discriminator  # prepared
    generator_optimizer: torch.optim.Optimizer
    critic_optimizer: torch.optim.Optimizer
    identity_model: nn.Module | None
    state: TrainingState
    checkpoint_dir: Path
    weights: LossWeights
    motion_model: MotionModel | None = None

    @classmethod
    def create(cls, args: argparse.Namespace, accelerator: Accelerator,
               motion_model: MotionModel | None = None) -> Trainer:  # fmt: skip
        """Build (or load) the networks, their Adam optimisers, and prepare them for ``accelerator``; the loss
        weights from the ``--lambda_*`` flags; ``motion_model`` teaches the deformation generator."""
        model, discriminator = build_models(args)
        if (motion_model is not None and model.deformer is not None
                and motion_model.inner_brow_combination != model.deformer.inner_brow_combination):
            # A pretrained deformation generator keeps its own composition; a motion model fitted again does not.
            said = {True: "does", False: "does not"}
            raise SystemExit("The deformation generator and its motion model must move the brows alike (FACS's 1+4, "
                             f"inner_brow_combination): the generator {said[model.deformer.inner_brow_combination]}, "
                             f"the motion model {said[motion_model.inner_brow_combination]}. Pass "
                             "--inner_brow_combination to give both the rule.")  # fmt: skip
        if args.freeze_deformer:
            model.deformer.requires_grad_(False)  # no gradient, so Adam leaves its weights as they are
        identity_model = build_identity_model(args.identity_model, model.texture_only)
        if identity_model is not None:
            identity_model.to(accelerator.device)
        adam = dict(lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2))
        # Both generators are optimised jointly (paper §4.1).
        generator_optimizer = torch.optim.Adam(model.parameters(), **adam)
        critic_optimizer = torch.optim.Adam(discriminator.parameters(), **adam)
        model, discriminator, generator_optimizer, critic_optimizer = accelerator.prepare(
            model, discriminator, generator_optimizer, critic_optimizer
        )
        # The critic's autocast is applied per call instead, so that the gradient penalty can run in fp32.
        accelerator.unwrap_model(discriminator, keep_fp32_wrapper=False)
        state = TrainingState()
        accelerator.register_for_checkpointing(state)
        weights = LossWeights(**{field.name: getattr(args, f"lambda_{field.name}") for field in fields(LossWeights)})
        if weights.motion_teacher > 0 and motion_model is None:
            raise SystemExit("--lambda_motion_teacher needs a motion model: annotate the data with defgan-annotate "
                             "(landmarks.csv) or name one with --motion_model.")  # fmt: skip
        if motion_model is not None:
            motion_model.to(accelerator.device)
        return cls(args, accelerator, model, discriminator, generator_optimizer, critic_optimizer, identity_model,
                   state, Path(args.output_dir), weights, motion_model)

    @property
    def unwrapped_model(self) -> DefGAN:
        return self.accelerator.unwrap_model(self.model)

    def set_learning_rate(self, learning_rate: float) -> None:
        for optimizer in (self.critic_optimizer, self.generator_optimizer):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate

    def _sync_unless(self, module: nn.Module, last: bool) -> contextlib.AbstractContextManager:
        """Skip the gradient all-reduce on every micro-batch but the last of a step."""
        return contextlib.nullcontext() if last else self.accelerator.no_sync(module)

    def reduce_and_check(self, window: dict[str, list[torch.Tensor]], checked_step: int) -> dict[str, float]:
        """The window's mean of each loss term, averaged over processes; stop everywhere at once if one is NaN or
        infinite (it arose after ``checked_step``, the last step checked). One blocking reduce per call: the loop
        calls it when it logs and before each checkpoint."""
        names = list(window)
        means = torch.stack([torch.stack(window[name]).mean() for name in names])
        values = self.accelerator.reduce(means, reduction="mean").tolist()
        bad = [name for name, value in zip(names, values) if not math.isfinite(value)]
        if bad:
            kept = list_checkpoints(self.checkpoint_dir)
            raise NonFiniteLossError(
                f"{', '.join(bad)} became non-finite between step {checked_step} and step {self.state.global_step}; "
                f"training stopped. Last good checkpoint: {kept[-1] if kept else 'none'}. Resume from it with a "
                "lower --learning_rate, or train in fp32/bf16 instead of fp16."
            )
        return dict(zip(names, values))

    def motion_pretraining_step(self, batches: list[EditBatch]) -> dict[str, torch.Tensor]:
        """One update of the generators on :func:`~defgan_hf.objective.motion_pretraining_objective`."""
        if self.motion_model is None:
            raise RuntimeError("motion pretraining needs the trainer's motion model")
        return self._update(self.generator_optimizer, self.model, batches, "pretraining/total",
                            lambda batch: motion_pretraining_objective(self.model, batch, self.motion_model,
                                                                       self.weights.mouth_interior))  # fmt: skip

    def texture_pretraining_step(self, pairs: list[FramePair]) -> dict[str, torch.Tensor]:
        """One update of the generators on :func:`~defgan_hf.objective.texture_pretraining_objective`."""
        return self._update(self.generator_optimizer, self.model, pairs, "texture_pretraining/total",
                            lambda pair: texture_pretraining_objective(
                                self.model, pair, self.weights, texture_only=self.unwrapped_model.texture_only,
                                motion_model=self.motion_model))  # fmt: skip

    def critic_step(self, batches: list[EditBatch]) -> dict[str, torch.Tensor]:
        """One critic update (:func:`~defgan_hf.objective.critic_objective`) over micro-batches."""
        return self._update(self.critic_optimizer, self.discriminator, batches, "critic/total",
                            lambda batch: critic_objective(self.model, self.discriminator, batch, self.weights,
                                                           self.accelerator.autocast))  # fmt: skip

    def generator_step(self, batches: list[EditBatch]) -> dict[str, torch.Tensor]:
        """One joint update of both generators (:func:`~defgan_hf.objective.generator_objective`) over micro-batches."""
        critic = self.accelerator.unwrap_model(self.discriminator)  # scored, not updated: no DDP synchronisation
        return self._update(self.generator_optimizer, self.model, batches, "generator/total",
                            lambda batch: generator_objective(
                                self.model, critic, batch, self.weights, texture_only=self.unwrapped_model.texture_only,
                                identity_model=self.identity_model, motion_model=self.motion_model,
                                autocast=self.accelerator.autocast))  # fmt: skip

    def _update(self, optimizer: torch.optim.Optimizer, module: nn.Module, batches: list[Any], total: str,
                objective: Callable[[Any], tuple[torch.Tensor, dict[str, torch.Tensor]]]) -> dict[str, torch.Tensor]:  # fmt: skip
        """One optimiser step of ``module`` on ``objective`` summed over micro-batches; the step's mean terms
        (detached, not synchronised) with the loss as ``total``."""
        optimizer.zero_grad(set_to_none=True)
        logged: dict[str, torch.Tensor] = {}
        for index, batch in enumerate(batches):
            with self._sync_unless(module, index == len(batches) - 1):
                loss, terms = objective(batch)
                _accumulate(logged, {**terms, total: loss}, len(batches))
                self.accelerator.backward(loss / len(batches))
        optimizer.step()
        return logged


def _endless(loader: Iterable[Any]) -> Iterator[Any]:
    """``loader``'s batches, epoch after epoch (each epoch shuffled anew)."""
    for epoch in itertools.count():
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        yield from loader


def main(args: argparse.Namespace) -> None:
    output_dir = Path(args.output_dir)
    accelerator = Accelerator(
        mixed_precision=args.mixed_precision,
        log_with=None if args.logger == "none" else args.logger,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
        # The sampler's shuffle depends on seed and epoch only, so a resumed run sees the same batches.
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s", level=logging.INFO)
    logging.getLogger("accelerate").setLevel(logging.WARNING)  # one line per checkpoint file is noise
    run_lock = hold_output_dir(accelerator, output_dir)  # held until the run ends, or its process dies
    set_seed(args.seed, device_specific=True)

    # Data: fails here, before any model is built, if the folder holds nothing usable.
    dataset = FaceAUDataset.from_data_dir(args.data_dir, resolution=args.resolution, flip=args.random_flip,
                                          augment=args.augment)
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.train_batch_size, shuffle=True, drop_last=True,
                                         num_workers=args.dataloader_num_workers)
    if len(loader) == 0:
        raise SystemExit(f"{len(dataset)} usable faces are fewer than one batch of {args.train_batch_size}; "
                         "lower --train_batch_size or add data.")

    # Models and optimisers.
    motion_model = build_motion_model(args)
    trainer = Trainer.create(args, accelerator, motion_model)
    deformer = trainer.unwrapped_model.deformer
    reads_landmarks = deformer is not None and deformer.landmark_input  # --landmark_input, or a pretrained one's
    uses_landmarks = (args.mask_regions or reads_landmarks or args.lambda_motion_teacher > 0
                      or args.motion_pretraining_steps > 0)  # fmt: skip
    if uses_landmarks and dataset.num_with_landmarks < len(dataset):
        raise SystemExit(f"--mask_regions, --landmark_input and the motion teacher need every face's landmarks, but "
                         f"{len(dataset) - dataset.num_with_landmarks} of {len(dataset)} faces have none: annotate "
                         "the data with defgan-annotate, which writes landmarks.csv.")  # fmt: skip
    if args.motion_pretraining_steps > 0 and (deformer is None or deformer.conditioning != "change"
                                              or motion_model is None):  # fmt: skip
        raise SystemExit("--motion_pretraining_steps teaches a deformation generator the motion model's per-AU "
                         "fields: it needs one with --conditioning change (not --texture_only) and a motion model "
                         "(landmarks.csv in --data_dir, or --motion_model).")  # fmt: skip
    pair_batches = None
    if args.texture_pretraining_steps > 0:
        if deformer is not None and (deformer.conditioning != "change" or motion_model is None):
            raise SystemExit("--texture_pretraining_steps warps each first frame by the landmarks' motion and keeps "
                             "the deformation generator's per-AU fields on the motion model's: it needs one with "
                             "--conditioning change and a motion model (landmarks.csv in --data_dir, or "
                             "--motion_model), or --texture_only.")  # fmt: skip
        try:
            pairs = FramePairDataset.from_data_dir(args.frame_pairs, resolution=args.resolution, flip=args.random_flip)
        except (FileNotFoundError, ValueError) as error:
            raise SystemExit(f"--frame_pairs {args.frame_pairs}: {error}") from None
        pair_loader = accelerator.prepare(torch.utils.data.DataLoader(
            pairs, batch_size=args.train_batch_size, shuffle=True, drop_last=True,
            num_workers=args.dataloader_num_workers))  # fmt: skip
        if len(pair_loader) == 0:
            raise SystemExit(f"--frame_pairs {args.frame_pairs}: {len(pairs)} frame pairs are fewer than one batch of "
                             f"{args.train_batch_size} per process; lower --train_batch_size or add videos.")  # fmt: skip
        # Drawn at random for every step: a resumed run does not replay the pairs it had seen.
        pair_batches = _endless(pair_loader)
    state = trainer.state
    loader = accelerator.prepare(loader)
    pretraining_steps = args.motion_pretraining_steps + args.texture_pretraining_steps

    steps_per_epoch = len(loader) // args.gradient_accumulation_steps
    if steps_per_epoch == 0:
        raise SystemExit(f"One epoch has {len(loader)} batches per process, fewer than "
                         f"--gradient_accumulation_steps {args.gradient_accumulation_steps}.")
    max_train_steps = args.max_train_steps or args.num_epochs * steps_per_epoch
    num_epochs = math.ceil(max_train_steps / steps_per_epoch)
    decay_steps = round(args.lr_decay_epochs * steps_per_epoch)
    output_dir.mkdir(parents=True, exist_ok=True)
    resume = args.resume_from_checkpoint
    if resume == "latest":
        checkpoints = list_checkpoints(output_dir)
        resume = str(checkpoints[-1]) if checkpoints else None
        if resume is None:
            logger.info("No checkpoint in %s yet: starting fresh.", output_dir)
    if resume:
        if not Path(resume).is_dir():
            raise SystemExit(f"--resume_from_checkpoint {resume} is not a checkpoint folder.")
        accelerator.load_state(resume)
        logger.info("Resumed from %s at step %d.", resume, state.global_step)

    accelerator.init_trackers("defgan", config={k: v for k, v in vars(args).items()
                                                if isinstance(v, int | float | str | bool) and k != "hub_token"})
    # The same faces, unflipped, in every sample grid, each toward a different preset expression; spread
    # evenly over the dataset, so that a folder of several people or videos shows more than its first one.
    shown = np.linspace(0, len(dataset) - 1, min(args.num_samples, len(dataset))).round().astype(int).tolist()
    sample_faces = torch.stack([read_face_crop(dataset.image_dir / dataset.files[i], args.resolution) for i in shown])
    sample_aus = dataset.aus[shown]
    sample_landmarks = dataset.landmarks[shown] if uses_landmarks else None
    presets = [vector for name, vector in EXPRESSIONS.items() if name != "neutral"]
    sample_targets = torch.stack([presets[i % len(presets)] for i in range(len(sample_faces))])
    unwrapped = trainer.unwrapped_model
    max_offset = 0.0 if unwrapped.texture_only else unwrapped.deformer.max_offset

    def save_samples(step: int) -> None:
        with torch.no_grad(), accelerator.autocast():
            faces = sample_faces.to(accelerator.device)
            landmarks = None if sample_landmarks is None else sample_landmarks.to(faces.device)
            edit = unwrapped(faces, sample_aus.to(faces.device), sample_targets.to(faces.device), landmarks)
        picture = sample_grid(faces, edit, sample_targets, max_offset)
        (output_dir / "samples").mkdir(exist_ok=True)
        picture.save(output_dir / "samples" / f"step-{step:07d}.png")
        if args.logger == "tensorboard":
            accelerator.get_tracker("tensorboard").writer.add_image("samples", np.asarray(picture), step,
                                                                    dataformats="HWC")
        elif args.logger == "trackio":
            import trackio

            accelerator.log({"samples": trackio.Image(picture)}, step=step)

    def write_model(step: int, metrics: dict[str, float]) -> None:
        if accelerator.is_main_process:
            save_model_folder(unwrapped, accelerator.unwrap_model(trainer.discriminator), output_dir / MODEL_FOLDER,
                              model_card(args, dataset, metrics, step), motion_model)

    # The loop.
    first_epoch = state.global_step // steps_per_epoch
    batches_to_skip = (state.global_step % steps_per_epoch) * args.gradient_accumulation_steps
    progress = tqdm(total=max_train_steps, initial=state.global_step, desc="steps",
                    disable=not accelerator.is_local_main_process)
    window: dict[str, list[torch.Tensor]] = defaultdict(list)
    checked_step = state.global_step  # the last step whose losses were checked
    metrics: dict[str, float] = {}

    def check_losses() -> dict[str, float]:
        """The window's losses, reduced and checked (:meth:`Trainer.reduce_and_check`) up to this step."""
        nonlocal checked_step
        values = trainer.reduce_and_check(window, checked_step)
        checked_step = state.global_step
        return values

    for epoch in range(first_epoch, num_epochs):
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        epoch_loader = accelerator.skip_first_batches(loader, batches_to_skip) if batches_to_skip else loader
        batches_to_skip = 0
        pending: list[EditBatch] = []
        for item in epoch_loader:
            target_aus = sample_target_aus(item.aus, noise=args.target_noise, single_au_fraction=args.single_au_targets)
            landmarks, mirrored = (item.landmarks, item.mirrored) if uses_landmarks else (None, None)
            pending.append(EditBatch(item.image, item.aus, target_aus, landmarks, mirrored))
            if len(pending) < args.gradient_accumulation_steps:
                continue
            # The learning rate is a function of the step counter, which checkpoints restore.
            learning_rate = args.learning_rate * learning_rate_factor(state.global_step, max_train_steps, decay_steps)
            trainer.set_learning_rate(learning_rate)
            if state.global_step < args.motion_pretraining_steps:
                step_losses = trainer.motion_pretraining_step(pending)
            elif pair_batches is not None and state.global_step < pretraining_steps:
                step_losses = trainer.texture_pretraining_step([next(pair_batches) for _ in pending])
            else:
                step_losses = trainer.critic_step(pending)
                if (state.global_step + 1) % args.critic_steps == 0:
                    step_losses.update(trainer.generator_step(pending))
            pending = []
            state.global_step += 1
            progress.update(1)
            for name, value in step_losses.items():
                window[name].append(value)
            if state.global_step % args.logging_steps == 0 or state.global_step == max_train_steps:
                metrics = check_losses()
                metrics["lr"] = learning_rate
                accelerator.log(metrics, step=state.global_step)
                progress.set_postfix({name.split("/")[0]: f"{metrics[name]:.4g}" for name in
                                      ("pretraining/total", "texture_pretraining/total", "critic/total",
                                       "generator/total") if name in metrics})
                window.clear()
            if state.global_step % args.checkpointing_steps == 0:
                if checked_step < state.global_step:  # never a checkpoint of a NaN
                    check_losses()
                save_checkpoint(accelerator, output_dir, state.global_step, args.checkpoints_total_limit)
            if state.global_step % args.sample_steps == 0 and accelerator.is_main_process:
                save_samples(state.global_step)
            if state.global_step >= max_train_steps:
                break
        if checked_step < state.global_step:  # the steps since the last check
            check_losses()
        write_model(state.global_step, metrics)
        if state.global_step >= max_train_steps:
            break
    progress.close()

    if dataset.num_skipped:
        logger.warning("Unreadable images skipped on this process: %s", ", ".join(dataset.skipped_files))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process and args.push_to_hub:
        url = push_folder(output_dir / MODEL_FOLDER, args.hub_model_id or output_dir.name, token=args.hub_token,
                          commit_message=f"defgan-hf training, step {state.global_step}")
        logger.info("Pushed to %s", url)
    accelerator.end_training()
    run_lock.release()


if __name__ == "__main__":
    main(parse_args())
