"""The motion model: fitted on a small annotated set of two real people, what each AU does to the landmarks,
the dense grid it draws, and how it ships with a model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from benchmarks.grid_fidelity import MOVING, realised_fraction
from defgan_hf import AU_NAMES, DefGAN, DeformationGenerator, TextureGenerator
from defgan_hf.aus import AU_REGIONS, au_vector
from defgan_hf.images import image_to_tensor
from defgan_hf.face_regions import (BROW_TAILS, INNER_BROW_HEADS, INNER_LIPS, NUM_MESH_LANDMARKS, opened_mouth_mask,
                                    region_landmarks)
from defgan_hf.motion import (FACS_PRIOR, MIN_AU_RANGE, MotionModel, facs_prior_displacements, fit_motion_data, main,
                               read_motion_data, regress_motion)
from defgan_hf.warp import grid_offsets_px, identity_grid, warp

# Face-mesh indices (left and right as seen in the image).
LIP_CORNERS = {"left": 61, "right": 291}
LOWER_LIP = (14, 17, 84, 314)
UPPER_LIP = (0, 13, 37, 267, 82, 312)
CHIN = 152
BROWS = (70, 63, 105, 66, 107, 336, 296, 334, 293, 300)
INNER_BROWS = {"left": 107, "right": 336}
UPPER_LIDS = (159, 158, 160, 386, 385, 387)
SIZE = 128


@pytest.fixture(scope="module")
def data(small_motion_set):
    return read_motion_data(small_motion_set).at_size(SIZE)


@pytest.fixture(scope="module")
def motion(data) -> MotionModel:
    return fit_motion_data(data, image_size=SIZE)


def motion_of(motion: MotionModel, name: str) -> np.ndarray:
    """``(468, 2)`` pixels per unit of AU ``name``."""
    return motion.displacements[AU_NAMES.index(name)].numpy()


def test_the_small_set_has_both_people_with_landmarks_in_the_crop(data):
    assert set(data.sources) == {"pyfeat/crying_to_laughing", "facetorch"}
    assert data.landmarks.shape == (len(data.files), 478, 2)
    assert np.all((data.landmarks > -0.1 * SIZE) & (data.landmarks < 1.1 * SIZE))


def test_au12_moves_both_lip_corners_up_and_outward(motion):
    au12 = motion_of(motion, "AU12")
    (left_x, left_y), (right_x, right_y) = au12[LIP_CORNERS["left"]], au12[LIP_CORNERS["right"]]
    assert left_x < -1.0 and right_x > 1.0, "outward"
    assert left_y < -1.0 and right_y < -1.0, "up"


@pytest.mark.parametrize("name", ["AU25", "AU26"])
def test_lips_part_and_jaw_drop_move_the_lower_lip_down(motion, name):
    assert motion_of(motion, name)[list(LOWER_LIP), 1].mean() > 2.0


@pytest.mark.parametrize("name", ["AU01", "AU02"])
def test_brow_raisers_raise_the_brows(motion, name):
    assert motion_of(motion, name)[list(BROWS), 1].mean() < -1.0


def test_brow_lowerer_lowers_the_brows_and_draws_them_together(motion):
    au04 = motion_of(motion, "AU04")
    assert au04[list(BROWS), 1].mean() > 0.5
    assert au04[INNER_BROWS["left"], 0] > 0.5 and au04[INNER_BROWS["right"], 0] < -0.5


def test_blink_lowers_the_upper_lids(motion):
    assert motion_of(motion, "AU45")[list(UPPER_LIDS), 1].mean() > 2.0


def test_no_au_moves_a_landmark_outside_its_region(motion):
    regions = region_landmarks(motion.mean_landmarks.numpy())
    for name in AU_NAMES:
        inside = np.any([regions[region] for region, names in AU_REGIONS.items() if name in names], axis=0)
        assert not np.any(motion_of(motion, name)[~inside]), name
        if name in motion.supported_aus + motion.prior_aus:
            assert np.abs(motion_of(motion, name)[inside]).max() > 0.5, f"{name} is in the model but moves nothing"


def test_aus_the_data_cannot_support_are_reported_and_move_as_facs_says_or_not_at_all(data):
    """AU15 barely varies in this data: it is not fitted, and moves as FACS_PRIOR says, or nothing without the prior."""
    index = AU_NAMES.index("AU15")
    aus = data.aus.copy()
    aus[:, index] = np.random.default_rng(0).uniform(0, MIN_AU_RANGE / 4, len(aus))  # almost constant
    fit = regress_motion(data.landmarks, aus, data.pose, data.sources)
    assert not fit.supported[index] and fit.prior[index]
    assert fit.supported[AU_NAMES.index("AU12")] and not fit.prior[AU_NAMES.index("AU12")]
    corners = fit.displacements[index, list(LIP_CORNERS.values())]
    assert np.all(corners[:, 1] > 2.0), "the lip corners go down"
    model = MotionModel.from_fit(fit, image_size=SIZE)
    assert "AU15" in model.prior_aus and "AU15" not in model.supported_aus
    without = regress_motion(data.landmarks, aus, data.pose, data.sources, facs_prior=False)
    assert not without.prior.any() and not without.displacements[index].any()
    left_out = regress_motion(data.landmarks, aus, data.pose, data.sources, left_out=("AU15",))
    assert not left_out.prior[index] and not left_out.displacements[index].any()


def test_an_au_the_data_show_only_with_another_moves_as_facs_says_and_is_not_fitted_twice(data):
    """Jaw drop read as lips part plus a little noise has a range but none of its own: it is not fitted and moves
    as FACS says. Landmarks that move only as that prior says leave lips part, beside it, nothing to fit."""
    k25, k26 = AU_NAMES.index("AU25"), AU_NAMES.index("AU26")
    aus = data.aus.copy()
    noise = np.random.default_rng(0).uniform(0, MIN_AU_RANGE / 4, len(aus))
    aus[:, k26] = np.clip(aus[:, k25] + noise, 0.0, 1.0)
    assert np.ptp(aus[:, k26]) > MIN_AU_RANGE and np.ptp(aus[:, k25]) > MIN_AU_RANGE
    fit = regress_motion(data.landmarks, aus, data.pose, data.sources)
    assert not fit.supported[k26] and fit.prior[k26] and fit.supported[k25]
    model = MotionModel.from_fit(fit, image_size=SIZE)
    assert "of its own" in model.why_not_fitted("AU26") and model.why_not_fitted("AU25") == ""

    # Each person's mean face, moved by the jaw's prior as far as each frame's jaw drop differs from the person's mean.
    rest = {source: data.landmarks[data.sources == source, :NUM_MESH_LANDMARKS].mean(axis=0) for source in set(data.sources)}
    jaw = facs_prior_displacements(np.mean(list(rest.values()), axis=0), ["AU26"])[k26]
    drop = {source: aus[data.sources == source, k26].mean() for source in rest}
    landmarks = np.stack([rest[source] + (value - drop[source]) * jaw for source, value in zip(data.sources, aus[:, k26])])
    only_jaw = regress_motion(landmarks, aus, data.pose, data.sources)
    assert np.abs(only_jaw.displacements[k26] - jaw).max() < 1e-4
    assert np.abs(only_jaw.displacements[k25]).max() < 0.05 * np.abs(jaw).max()


def test_the_facs_prior_moves_what_facs_says(motion):
    """Whatever the data holds of them, the prior's motion: lip corners down (AU15) and outward (AU20),
    upper lids up (AU05), the jaw with the lower lip and chin down (AU26), each within its region."""
    prior = facs_prior_displacements(motion.mean_landmarks.numpy(), list(FACS_PRIOR))
    au15, au20, au05, au26 = (prior[AU_NAMES.index(name)] for name in ("AU15", "AU20", "AU05", "AU26"))
    assert np.all(au15[list(LIP_CORNERS.values()), 1] > 2.0)
    assert au20[LIP_CORNERS["left"], 0] < -2.0 and au20[LIP_CORNERS["right"], 0] > 2.0
    assert au05[list(UPPER_LIDS), 1].max() < -1.0
    assert np.all(au26[list(LOWER_LIP) + [CHIN], 1] > 2.0) and not au26[:, 0].any()
    assert not au26[list(UPPER_LIP)].any(), "the upper lip stays with the skull"
    assert not prior[AU_NAMES.index("AU12")].any()


def test_motion_is_linear_past_the_range_of_the_data_but_a_shut_lid_closes_no_further(motion):
    source = torch.zeros(1, len(AU_NAMES))
    index = AU_NAMES.index("AU12")
    half, full = source.clone(), source.clone()
    half[0, index], full[0, index] = 0.5, 1.0
    assert motion.au_high[index] < 1.0
    assert torch.allclose(motion.landmark_motion(source, full), 2 * motion.landmark_motion(source, half))
    blink = AU_NAMES.index("AU45")
    at_high, beyond = source.clone(), source.clone()
    at_high[0, blink], beyond[0, blink] = motion.au_high[blink], 1.0
    assert motion.au_high[blink] < 1.0
    assert torch.equal(motion.landmark_motion(source, beyond), motion.landmark_motion(source, at_high))


def brow_edit(**aus: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A source with no AU and a target with ``aus``."""
    source = torch.zeros(1, len(AU_NAMES))
    return source, au_vector(aus)[None]


def test_with_the_inner_brow_combination_1_plus_4_raises_the_inner_brows_and_slants_the_brows(motion):
    combined = MotionModel(**{**motion._hub_mixin_config, "inner_brow_combination": True})
    combined.load_state_dict(motion.state_dict())
    heads, tails = list(INNER_BROW_HEADS), list(BROW_TAILS)
    raiser = motion.landmark_motion(*brow_edit(AU01=0.6))[0]
    added = motion.landmark_motion(*brow_edit(AU01=0.6, AU04=0.6))[0]
    grief = combined.landmark_motion(*brow_edit(AU01=0.6, AU04=0.6))[0]
    # Summed, the lowerer undoes part of the raiser's lift of the inner brows; in 1+4 the lift is the raiser's.
    assert added[heads, 1].mean() > raiser[heads, 1].mean() + 0.5
    assert torch.allclose(grief[heads, 1], raiser[heads, 1], atol=0.05 * raiser[heads, 1].abs().max())
    # The tails are lowered as before (the brows turn oblique), and the brows are still drawn together.
    assert torch.allclose(grief[tails], added[tails], atol=1e-3)
    assert torch.allclose(grief[heads, 0], added[heads, 0], atol=0.1)
    assert grief[tails, 1].mean() > grief[heads, 1].mean() + 1.0
    # Either AU alone, and no change, move the brows as before.
    for aus in ({"AU01": 0.6}, {"AU04": 0.6}, {}):
        assert torch.equal(combined.landmark_motion(*brow_edit(**aus)), motion.landmark_motion(*brow_edit(**aus)))
    # From 1+4 back to no expression the inner brows come back down by the raiser's lift alone.
    source, target = brow_edit(AU01=0.6, AU04=0.6)
    assert torch.allclose(combined.landmark_motion(target, source), -grief[None], atol=1e-5)


@pytest.fixture(scope="module")
def face(data):
    """One face of the set: its landmarks (1, 478, 2) and AUs (1, 17)."""
    row = len(data.files) // 2
    return torch.from_numpy(data.landmarks[row : row + 1]).float(), torch.from_numpy(data.aus[row : row + 1]).float()


def smile(aus: torch.Tensor) -> torch.Tensor:
    target = aus.clone()
    target[:, AU_NAMES.index("AU12")] = 1.0
    target[:, AU_NAMES.index("AU25")] = 1.0
    return target


def test_no_change_asked_gives_the_identity_grid_exactly(motion, face):
    landmarks, aus = face
    assert torch.equal(motion.grid(landmarks, aus, aus), identity_grid(1, SIZE, SIZE))


def test_the_grid_is_bounded_zero_at_the_border_and_smooth(motion, face):
    landmarks, aus = face
    grid = motion.grid(landmarks, aus, smile(aus))
    offsets = grid_offsets_px(grid)[0]
    assert offsets.abs().max() <= motion.max_offset
    assert offsets.abs().max() > 2.0, "a smile with parted lips moves the mouth by pixels"
    for edge in (offsets[0], offsets[-1], offsets[:, 0], offsets[:, -1]):
        assert edge.abs().max() < 1e-5
    # Smooth and without folds: neighbouring pixels move alike (the lips part over a few pixels, not one),
    # and the warp keeps its orientation everywhere.
    assert (offsets[1:] - offsets[:-1]).abs().max() < 1.5 and (offsets[:, 1:] - offsets[:, :-1]).abs().max() < 1.5
    dx = grid[0, 1:, 1:] - grid[0, 1:, :-1]
    dy = grid[0, 1:, 1:] - grid[0, :-1, 1:]
    assert torch.all(dx[..., 0] * dy[..., 1] - dx[..., 1] * dy[..., 0] > 0)


def test_the_grid_moves_the_mouth_where_the_landmarks_say(motion, face):
    landmarks, aus = face
    target = smile(aus)
    grid = motion.grid(landmarks, aus, target)
    corner = landmarks[0, LIP_CORNERS["right"]]
    moved = corner + motion.landmark_motion(aus, target)[0, LIP_CORNERS["right"]]
    # The edited crop shows the corner at `moved`: the grid there reads the input near `corner`.
    x, y = moved.round().long().tolist()
    read_from = (grid[0, y, x] + 1) * (SIZE - 1) / 2
    assert torch.dist(read_from, corner) < 1.0


def test_a_fitted_grid_moves_the_landmarks_by_their_displacement(motion, face):
    # Drawn on a coarse lattice (32 on 128 pixels, what models saved before the option hold), the field between
    # landmarks that move differently was flattened: on this face the smile's landmarks moved by 0.84 of their
    # displacement and the lowered brows' by 0.77. A fit draws a lattice point every two pixels.
    landmarks, aus = face
    assert motion.spline_resolution == SIZE // 2
    for name, least in (("AU12", 0.9), ("AU04", 0.82)):
        target = aus.clone()
        target[0, AU_NAMES.index(name)] = 0.8
        displacement = motion.landmark_motion(aus, target)[0]
        moving = displacement.norm(dim=1).argsort()[-MOVING:]
        grid = motion.grid(landmarks, aus, target)
        assert realised_fraction(grid, landmarks[0, moving], displacement[moving]) > least, name


@pytest.mark.parametrize("mirrored", [False, True])
def test_per_au_fields_are_the_grid_of_a_small_change(motion, face, mirrored):
    """The deformation generator's teacher: B_k with grid ≈ Id + Σ Δ_k B_k for small changes, mirrored faces too."""
    landmarks, aus = face
    flag = torch.tensor([mirrored])
    fields = motion.au_fields(landmarks, flag)
    assert fields.shape == (1, len(AU_NAMES), 2, SIZE, SIZE)
    for name in ("AU12", "AU01", "AU45"):
        k = AU_NAMES.index(name)
        low, high = motion.au_low[k].item(), motion.au_high[k].item()
        source = aus.clone()
        source[0, k] = (low + high) / 2
        target = source.clone()
        target[0, k] += 0.02 * (high - low)
        offsets = grid_offsets_px(motion.grid(landmarks, source, target, flag))[0].permute(2, 0, 1)
        predicted = (target - source)[0, k] * fields[0, k]
        assert predicted.abs().max() > 0.01, name
        assert (offsets - predicted).abs().max() < 0.1 * predicted.abs().max(), name
    still = [AU_NAMES.index(name) for name in AU_NAMES if name not in motion.supported_aus + motion.prior_aus]
    assert not fields[0, still].any()


def test_secant_fields_are_the_grid_of_a_change_of_their_step_and_part_the_lips(motion, face):
    """With ``field_step = h`` each AU's field is its grid for a change of ``h``, divided by ``h``; lips part moves the
    lower lip's landmarks down where they arrive, where the tangent averages the two lips' offsets."""
    landmarks, aus = face
    step = 0.8
    secant = MotionModel(image_size=SIZE, num_landmarks=motion.num_landmarks, max_offset=1000.0, field_step=step)
    secant.load_state_dict(motion.state_dict())
    fields = secant.au_fields(landmarks)
    for name in ("AU12", "AU25"):
        k = AU_NAMES.index(name)
        source = torch.zeros_like(aus)
        target = source.clone()
        target[0, k] = step
        offsets = grid_offsets_px(secant.grid(landmarks, source, target))[0].permute(2, 0, 1)
        assert torch.allclose(step * fields[0, k], offsets, atol=1e-3 * offsets.abs().max()), name
    k = AU_NAMES.index("AU25")
    arrived = landmarks[0, LOWER_LIP[0]] + step * motion.displacements[k, LOWER_LIP[0]]
    x, y = arrived.round().long().tolist()
    # The lower lip seen where it arrives reads the input where it rested: about its whole motion back up.
    assert fields[0, k, 1, y, x] < -0.8 * motion.displacements[k, LOWER_LIP[0], 1]
    with pytest.raises(ValueError, match="field_step"):
        MotionModel(field_step=1.5)


def test_the_grid_is_batched(motion, data):
    landmarks = torch.from_numpy(data.landmarks[:3]).float()
    aus = torch.from_numpy(data.aus[:3]).float()
    batch = motion.grid(landmarks, aus, smile(aus))
    for row in range(3):
        one = motion.grid(landmarks[row : row + 1], aus[row : row + 1], smile(aus[row : row + 1]))
        assert torch.allclose(batch[row : row + 1], one, atol=1e-6)


def test_the_landmark_grid_shows_each_landmark_where_its_motion_takes_it(motion, data):
    """The grid between two frames of a video (texture pretraining): the second frame's landmark positions read the
    first frame where those landmarks were; no motion is the identity grid exactly."""
    frames = [row for row, file in enumerate(data.files) if "/frame_" in file]
    first, second = (torch.from_numpy(data.landmarks[[row]]).float() for row in (frames[0], frames[3]))
    assert (second - first).abs().max() > 1.0, "the face moves between the frames"
    grid = motion.landmark_grid(first, second - first)
    for index in (LIP_CORNERS["left"], LOWER_LIP[0], INNER_BROWS["right"], UPPER_LIDS[0]):
        x, y = second[0, index].round().long().tolist()
        read_from = (grid[0, y, x] + 1) * (SIZE - 1) / 2
        assert torch.dist(read_from, first[0, index]) < 1.0, index
    assert torch.equal(motion.landmark_grid(first, torch.zeros_like(first)), identity_grid(1, SIZE, SIZE))


def test_it_ships_in_a_model_folder_and_the_pipeline_loads_it(motion, tmp_path, sample_media):
    from defgan_hf import DefGANPipeline

    model = DefGAN(TextureGenerator(width=8, num_res_blocks=1), DeformationGenerator(width=8, num_res_blocks=1))
    model.save_pretrained(tmp_path, motion_model=motion)
    assert sorted(path.name for path in (tmp_path / "motion").iterdir()) == ["config.json", "model.safetensors"]
    loaded = MotionModel.from_pretrained(tmp_path, subfolder="motion")
    for name, tensor in motion.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    assert loaded.spline_resolution == motion.spline_resolution == SIZE // 2
    # A folder saved before the lattice was a setting draws its grid as it did then.
    config = json.loads((tmp_path / "motion" / "config.json").read_text())
    del config["spline_resolution"]
    (tmp_path / "motion" / "config.json").write_text(json.dumps(config))
    assert MotionModel.from_pretrained(tmp_path, subfolder="motion").spline_resolution == 32

    pipe = DefGANPipeline.from_pretrained(tmp_path)
    assert pipe.motion_model is not None
    face = pipe.detect(sample_media("15-f13-anc-ph.jpg"))
    unchanged = pipe.edit_face(face, intensity=0.0, expression="happy", motion_model_only=True)
    assert np.abs(np.asarray(unchanged.edited_crop, dtype=int) - np.asarray(face.aligned.image, dtype=int)).max() <= 1
    happy = pipe.edit_face(face, expression="happy", motion_model_only=True)
    assert grid_offsets_px(happy.grid).abs().max() > 1.0
    assert torch.allclose(warp(image_to_tensor(face.aligned.image), happy.grid), image_to_tensor(happy.edited_crop),
                          atol=1 / 127.5)  # fmt: skip


def test_a_model_without_a_motion_model_says_how_to_get_one(tmp_path, sample_media):
    from defgan_hf import DefGANPipeline

    DefGAN(TextureGenerator(width=8, num_res_blocks=1)).save_pretrained(tmp_path)
    pipe = DefGANPipeline.from_pretrained(tmp_path)
    assert pipe.motion_model is None
    with pytest.raises(ValueError, match="defgan-fit-motion"):
        pipe(sample_media("15-f13-anc-ph.jpg"), expression="happy", motion_model_only=True)


def test_the_command_fits_and_saves_and_explains_a_folder_without_landmarks(small_motion_set, tmp_path, capsys):
    assert main([str(small_motion_set), "--out", str(tmp_path / "model")]) == 0
    assert "AUs fitted" in capsys.readouterr().err
    assert MotionModel.from_pretrained(tmp_path / "model", subfolder="motion").supported.sum() > 5
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "aus.csv").write_text("file,AU01_r\n")
    with pytest.raises(SystemExit):
        main([str(tmp_path / "old"), "--out", str(tmp_path / "model2")])
    assert "landmarks.csv" in capsys.readouterr().err


def test_a_motion_model_edit_that_asks_for_no_change_returns_the_photo_exactly(motion, tmp_path, sample_media):
    from PIL import Image

    from defgan_hf import DefGANPipeline

    DefGAN(TextureGenerator(width=8, num_res_blocks=1)).save_pretrained(tmp_path, motion_model=motion)
    pipe = DefGANPipeline.from_pretrained(tmp_path)
    photo = Image.open(sample_media("0-f15-hao-ph.jpg")).convert("RGB")
    for edit in ({"expression": "happy", "intensity": 0.0}, {}):
        assert pipe(photo, motion_model_only=True, **edit).image.tobytes() == photo.tobytes()
    assert pipe(photo, expression="surprise", motion_model_only=True).image.tobytes() != photo.tobytes()


def test_the_mouth_opens_where_parted_lips_leave_the_warp_only_lips_to_stretch(motion, face):
    """The texture teacher's geometry (:func:`opened_mouth_mask`): lips asked to part open a hole that a warp which
    does not part them (here: none) can only fill with lip; no change opens nothing, nor does a mouth already open
    that the edit only carries along."""
    landmarks, aus = face
    source = aus.clone()
    target = source.clone()
    target[:, AU_NAMES.index("AU25")] = (source[:, AU_NAMES.index("AU25")] + 0.8).clamp(max=1.0)
    points = landmarks[:, :NUM_MESH_LANDMARKS]
    moved = points + motion.edit_motion(source, target)
    opened = opened_mouth_mask(points, moved, identity_grid(1, SIZE, SIZE))
    assert opened.shape == (1, 1, SIZE, SIZE) and opened.sum() > 20
    x, y = moved[0, list(INNER_LIPS)].mean(dim=0).round().long().tolist()
    assert opened[0, 0, y, x] == 1, "the middle of the parted lips"
    assert not opened[0, 0, : SIZE // 2].any(), "nothing above the mouth"
    assert not opened_mouth_mask(points, points, identity_grid(1, SIZE, SIZE)).any()
    # A mouth held open, carried 3 px down by the edit, its inside carried with it: nothing opens.
    open_mouth = points.clone()
    upper, lower = list(INNER_LIPS[:11]), list(INNER_LIPS[11:])
    open_mouth[:, upper, 1] -= 3.0
    open_mouth[:, lower, 1] += 3.0
    shift = torch.tensor([0.0, 3.0])
    carried = identity_grid(1, SIZE, SIZE) - shift * 2.0 / (SIZE - 1)
    assert not opened_mouth_mask(open_mouth, open_mouth + shift, carried).any()
