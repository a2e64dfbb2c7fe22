"""The synthetic face renderer: determinism, FACS-like motion, texture no warp can make, regions, dataset mode."""

from __future__ import annotations

import csv
import dataclasses
import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from defgan_hf import AU_NAMES, NUM_AUS
from defgan_hf.aus import TEXTURE_AUS
from defgan_hf.data import FaceAUDataset
from defgan_hf.motion import fit_motion_data, read_motion_data
from defgan_hf.synthetic import (
    IDENTITIES_FILE,
    MAX_MOTION,
    MOTION_AUS,
    FaceGeometry,
    Identity,
    au_regions,
    face_geometry,
    face_mesh,
    main,
    render_batch,
    render_face,
    sample_aus,
    sample_identity,
    write_dataset,
)

LEVELS = (0.0, 0.25, 0.5, 0.75, 1.0)


def clean_identity(index: int) -> Identity:
    """A sampled face without glasses or beard, whose features can be found by colour."""
    return dataclasses.replace(sample_identity(11, index), glasses=None, beard=False)


def geometry_at(identity: Identity, au: str, level: float) -> FaceGeometry:
    return face_geometry(identity, {au: level})


def pixel_rows_cols(size: int, x: float, y: float) -> tuple[int, int]:
    """Pixel (row, column) of a normalised point (−1 and 1 are the centres of the edge pixels)."""
    return round((y + 1) * (size - 1) / 2), round((x + 1) * (size - 1) / 2)


def strictly_increasing(values: list[float]) -> bool:
    return all(later > earlier for earlier, later in itertools.pairwise(values))


def strictly_decreasing(values: list[float]) -> bool:
    return strictly_increasing([-value for value in values])


def unwarpable_pixels(neutral: np.ndarray, edited: np.ndarray, max_offset_px: float, tolerance: float = 20.0) -> int:
    """Changed pixels of ``edited`` that no bilinear backward warp of ``neutral`` within ``max_offset_px`` can give.

    A warp reads ``neutral`` bilinearly at a point at most ``max_offset_px`` away, so it can produce any
    colour of the neutral face sampled there, including blends of neighbouring pixels; sampling on a
    half-pixel lattice, a pixel is unreachable when every such colour differs from it by more than
    ``tolerance`` (0–255) in some channel.
    """
    size, up = neutral.shape[0], 2
    fine = (
        F.interpolate(
            torch.from_numpy(neutral).float().permute(2, 0, 1)[None],
            size=(up * (size - 1) + 1,) * 2,
            mode="bilinear",
            align_corners=True,
        )[0]
        .permute(1, 2, 0)
        .numpy()
    )
    rows, cols = np.nonzero(np.abs(neutral.astype(int) - edited.astype(int)).max(-1) > 0)
    reach = int(max_offset_px * up)
    dy, dx = np.mgrid[-reach : reach + 1, -reach : reach + 1]
    within = dy**2 + dx**2 <= reach**2
    dy, dx = dy[within], dx[within]
    ys = np.clip(rows[:, None] * up + dy, 0, fine.shape[0] - 1)
    xs = np.clip(cols[:, None] * up + dx, 0, fine.shape[1] - 1)
    distance = np.abs(fine[ys, xs] - edited[rows, cols][:, None].astype(np.float32)).max(-1).min(1)
    return int((distance > tolerance).sum())


# --- determinism and identities ------------------------------------------------------------------------


def test_same_identity_and_aus_give_identical_pixels() -> None:
    aus = sample_aus(np.random.default_rng(0))
    first = render_face(sample_identity(5, 3), aus, size=64)
    second = render_face(sample_identity(5, 3), aus.tolist(), size=64)

    assert first.image.dtype == np.uint8 and first.image.shape == (64, 64, 3)
    np.testing.assert_array_equal(first.image, second.image)
    assert sample_identity(5, 3) == sample_identity(5, 3) != sample_identity(5, 4) != sample_identity(6, 3)


def test_names_vectors_and_tensors_draw_the_same_face() -> None:
    identity = sample_identity(0)
    vector = np.zeros(NUM_AUS)
    vector[AU_NAMES.index("AU12")], vector[AU_NAMES.index("AU06")] = 0.8, 0.3

    by_name = render_face(identity, {"au12": 0.8, "AU6": 0.3}).image

    np.testing.assert_array_equal(by_name, render_face(identity, vector).image)
    np.testing.assert_array_equal(by_name, render_face(identity, torch.from_numpy(vector)).image)


def test_identities_vary_in_every_visible_way() -> None:
    identities = [sample_identity(0, index) for index in range(200)]

    skin_brightness = [np.mean(identity.skin) for identity in identities]
    assert max(skin_brightness) - min(skin_brightness) > 0.4  # light to dark skin
    assert 20 < sum(identity.glasses is not None for identity in identities) < 100
    assert 15 < sum(identity.beard for identity in identities) < 80
    assert 5 < sum(identity.bald for identity in identities) < 50
    for field in ("face_width", "jaw_taper", "eye_spacing", "nose_length", "mouth_width", "hair_length"):
        values = [getattr(identity, field) for identity in identities]
        assert max(values) > 1.2 * min(values), field  # proportions differ by a fifth or more
    images = np.stack([render_face(identity, {}, size=32).image for identity in identities[:20]]).astype(float)
    assert images.std(axis=0).mean() > 30  # the same pixel differs widely between faces


# --- motion: geometry -----------------------------------------------------------------------------------

# AU → (what FACS says it does, the landmark measured, +1 if it grows with the AU, −1 if it shrinks).
FACS_MOTION = {
    "AU01": ("raises the inner brows", lambda g: g.brow.inner[1], -1),
    "AU02": ("raises the outer brows", lambda g: g.brow.outer[1], -1),
    "AU04": ("lowers the brows", lambda g: g.brow.inner[1], +1),
    "AU05": ("raises the upper lids", lambda g: g.eye.upper, +1),
    "AU06": ("raises the cheeks", lambda g: g.cheek.centre[1], -1),
    "AU07": ("raises the lower lids", lambda g: g.eye.lower, -1),
    "AU09": ("raises the nose wings", lambda g: g.nose.wing[1], -1),
    "AU10": ("raises the upper lip", lambda g: g.mouth.upper_top_y, -1),
    "AU12": ("raises the lip corners", lambda g: g.mouth.corner[1], -1),
    "AU14": ("pulls the lip corners outward", lambda g: g.mouth.corner[0], +1),
    "AU15": ("lowers the lip corners", lambda g: g.mouth.corner[1], +1),
    "AU17": ("pushes the lower lip up", lambda g: g.mouth.lower_bottom_y, -1),
    "AU20": ("stretches the lips sideways", lambda g: g.mouth.corner[0], +1),
    "AU23": ("thins the lips", lambda g: g.mouth.upper_lip + g.mouth.lower_lip, -1),
    "AU25": ("parts the lips", lambda g: g.mouth.opening, +1),
    "AU26": ("drops the jaw", lambda g: g.jaw.chin_y, +1),
    "AU45": ("closes the eyes", lambda g: g.eye.opening, -1),
}


def test_every_au_has_a_motion_check() -> None:
    assert sorted(FACS_MOTION) == sorted(AU_NAMES)


@pytest.mark.parametrize("au", AU_NAMES)
def test_each_au_moves_its_landmark_monotonically(au: str) -> None:
    _, measure, direction = FACS_MOTION[au]
    for index in range(10):
        identity = sample_identity(1, index)
        base = sample_aus(np.random.default_rng(index))
        values = []
        for level in LEVELS:
            aus = base.copy()
            aus[AU_NAMES.index(au)] = level
            values.append(direction * measure(face_geometry(identity, aus)))
        assert strictly_increasing(values), (au, index, values)


def test_brow_lowerer_draws_the_brows_together_and_smile_widens_the_mouth() -> None:
    identity = sample_identity(1)
    assert strictly_decreasing([geometry_at(identity, "AU04", level).brow.inner[0] for level in LEVELS])
    assert strictly_increasing([geometry_at(identity, "AU12", level).mouth.corner[0] for level in LEVELS])
    assert strictly_increasing([geometry_at(identity, "AU26", level).mouth.opening for level in LEVELS])


def test_blink_shuts_the_eye_even_when_the_lids_are_raised() -> None:
    identity = sample_identity(2)
    assert face_geometry(identity, {"AU45": 1.0}).eye.opening == pytest.approx(0.0, abs=1e-12)
    assert face_geometry(identity, {"AU45": 1.0, "AU05": 1.0, "AU07": 1.0}).eye.opening == pytest.approx(0.0, abs=1e-12)


def landmarks(geometry: FaceGeometry) -> np.ndarray:
    """Every position and length of a geometry (not the wrinkles' strength, which is no distance)."""
    values = []
    for part in geometry.parts().values():
        for field in dataclasses.fields(part):
            if field.name != "wrinkles":
                values.extend(np.atleast_1d(getattr(part, field.name)))
    return np.asarray(values)


@pytest.mark.parametrize("au", sorted(MOTION_AUS))
def test_motion_aus_move_nothing_further_than_the_deformers_bound(au: str) -> None:
    for index in range(10):
        identity = sample_identity(1, index)
        moved = np.abs(landmarks(geometry_at(identity, au, 1.0)) - landmarks(geometry_at(identity, au, 0.0)))
        assert 0.2 * MAX_MOTION < moved.max() <= MAX_MOTION, (au, index, moved.max())  # 1 to 5 px at 128 px


# --- motion and texture: pixels -------------------------------------------------------------------------


def colour_mask(image: np.ndarray, colour: tuple[float, float, float], tolerance: float = 0.08) -> np.ndarray:
    return np.abs(image.astype(float) / 255 - np.asarray(colour)).max(-1) < tolerance


def mouth_and_eye_boxes(identity: Identity, size: int) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """Pixel windows around the mouth (closed or fully open, corners up, down or out) and the right eye."""
    top, left = pixel_rows_cols(size, -identity.mouth_width - 0.1, identity.mouth_y - 0.12)
    bottom, right = pixel_rows_cols(size, identity.mouth_width + 0.1, identity.mouth_y + 0.2)
    eye_top, eye_left = pixel_rows_cols(size, identity.eye_spacing - identity.eye_size, identity.eye_y - 0.08)
    eye_bottom, eye_right = pixel_rows_cols(size, identity.eye_spacing + identity.eye_size, identity.eye_y + 0.06)
    return (slice(top, bottom), slice(left, right)), (slice(eye_top, eye_bottom), slice(eye_left, eye_right + 1))


def white_pixels(image: np.ndarray) -> np.ndarray:
    """Bright, nearly colourless pixels: teeth and the whites of the eyes (skin and lips are never so)."""
    pixels = image.astype(float) / 255
    return (pixels.min(-1) > 0.75) & (pixels.max(-1) - pixels.min(-1) < 0.12 * pixels.max(-1))


def lip_pixel_height(identity: Identity, au: str, level: float, size: int = 128) -> float:
    """Mean row of the lip-coloured pixels near the mouth corners (beyond 60 % of the relaxed half-width)."""
    (rows, columns), _ = mouth_and_eye_boxes(identity, size)
    window = render_face(identity, {au: level}, size).image[rows, columns]
    lips = colour_mask(window, identity.lips) | colour_mask(window, tuple(min(1.0, 1.08 * c) for c in identity.lips))
    _, inner = pixel_rows_cols(size, 0.6 * identity.mouth_width, 0.0)
    inner -= columns.start
    lips[:, window.shape[1] - inner : inner] = False
    found_rows, _ = np.nonzero(lips)
    return float(found_rows.mean())


@pytest.mark.parametrize("index", range(3))
def test_smile_raises_and_frown_lowers_the_mouth_corners_in_pixels(index: int) -> None:
    identity = clean_identity(index)
    assert strictly_decreasing([lip_pixel_height(identity, "AU12", level) for level in LEVELS])
    assert strictly_increasing([lip_pixel_height(identity, "AU15", level) for level in LEVELS])


def brow_pixels(identity: Identity, au: str, level: float, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Rows and distances from the midline (in pixels) of the brow-coloured pixels."""
    image = render_face(identity, {au: level}, size).image
    brow = colour_mask(image, tuple(0.85 * c for c in identity.hair), 0.03)
    # Only around the brows: the hair has a lighter shade of the same colour.
    top, _ = pixel_rows_cols(size, 0.0, identity.eye_y - identity.brow_height - 0.12)
    bottom, _ = pixel_rows_cols(size, 0.0, identity.eye_y - 0.03)
    brow[:top], brow[bottom:] = False, False
    rows, cols = np.nonzero(brow)
    return rows, np.abs(cols - (size - 1) / 2)


@pytest.mark.parametrize("index", range(3))
def test_brows_rise_with_au01_and_au02_and_fall_together_with_au04_in_pixels(index: int) -> None:
    identity = clean_identity(index)
    for au in ("AU01", "AU02"):
        assert strictly_decreasing([brow_pixels(identity, au, level)[0].mean() for level in LEVELS]), au
    lowered = [brow_pixels(identity, "AU04", level) for level in LEVELS]
    assert strictly_increasing([rows.mean() for rows, _ in lowered])
    assert min(spread.min() for _, spread in lowered[1:]) < lowered[0][1].min()  # inner ends closer to the midline


@pytest.mark.parametrize("index", range(3))
def test_jaw_drop_opens_the_mouth_onto_teeth_and_lowers_the_chin_in_pixels(index: int) -> None:
    identity, size = clean_identity(index), 128
    mouth, _ = mouth_and_eye_boxes(identity, size)
    images = [render_face(identity, {"AU26": level}, size).image for level in LEVELS]
    teeth = [int(white_pixels(image[mouth]).sum()) for image in images]
    assert teeth[0] == 0 and strictly_increasing(teeth[1:]) and teeth[-1] >= 20, teeth
    assert white_pixels(render_face(identity, {"AU25": 1.0}, size).image[mouth]).sum() >= 5
    # The chin: below the mouth, the lowest pixel of the middle column nearer the colour of the face's edge
    # than that of the neck in the chin's shadow.
    start, _ = pixel_rows_cols(size, 0.0, identity.mouth_y + 0.15)
    skin = np.asarray(identity.skin)
    chin_rows = []
    for image in images:
        column = image[start:, size // 2].astype(float) / 255
        face_like = np.abs(column - 0.88 * skin).sum(-1) < np.abs(column - 0.78 * skin).sum(-1)
        chin_rows.append(start + np.nonzero(face_like)[0].max())
    assert all(later >= earlier for earlier, later in itertools.pairwise(chin_rows)), chin_rows
    assert chin_rows[-1] - chin_rows[0] >= 3, chin_rows  # the jaw drops 0.075, 4.8 px at 128 px


@pytest.mark.parametrize("index", range(3))
def test_blink_replaces_the_eyeball_by_the_eyelid_in_pixels(index: int) -> None:
    identity, size = clean_identity(index), 128
    _, eye = mouth_and_eye_boxes(identity, size)
    sclera, lid = [], []
    for level in LEVELS:
        window = render_face(identity, {"AU45": level}, size).image[eye]
        sclera.append(int(white_pixels(window).sum()))
        lid.append(int(colour_mask(window, identity.eyelid, 0.05).sum()))
    # An eye is 5 px high at 128 px and its iris fills most of it: a few pixels of sclera, all gone when shut.
    assert sclera[0] > 0 and all(later <= earlier for earlier, later in itertools.pairwise(sclera)), sclera
    assert sclera[-1] == 0, sclera
    # A lid only a pixel or two high is mostly its lash line: its own colour shows from half closed on.
    assert lid[0] == lid[1] == 0 and strictly_increasing(lid[1:]) and lid[-1] >= 20, lid


def test_motion_aus_are_reachable_by_a_bounded_warp_and_texture_aus_are_not() -> None:
    """The benchmark's premise, measured at 128 px with the paper's 5-pixel bound.

    A motion AU leaves at most a few pixels (new anti-aliasing blends at moved edges) that no bounded
    warp of the neutral face gives; a texture AU paints tens. Medians over faces: a white beard next
    to the lips can hide teeth from this measure on a single face.
    """
    size, counts = 128, {au: [] for au in AU_NAMES}
    for index in range(8):
        identity = sample_identity(3, index)
        neutral = render_face(identity, {}, size).image
        for au in AU_NAMES:
            counts[au].append(unwarpable_pixels(neutral, render_face(identity, {au: 1.0}, size).image, 5.0))
    for au in MOTION_AUS:
        assert np.median(counts[au]) <= 4 and max(counts[au]) <= 20, (au, counts[au])
    for au in TEXTURE_AUS:
        assert np.median(counts[au]) >= 15, (au, counts[au])


# --- regions --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [64, 128])
def test_regions_cover_every_pixel_each_au_changes(size: int) -> None:
    for index in range(6):
        identity = sample_identity(4, index)
        base = np.zeros(NUM_AUS) if index % 2 == 0 else sample_aus(np.random.default_rng(index))
        regions = render_face(identity, base, size).regions
        assert list(regions) == list(AU_NAMES)
        for position, au in enumerate(AU_NAMES):
            off, on = base.copy(), base.copy()
            off[position], on[position] = 0.0, 1.0
            changed = (render_face(identity, off, size).image != render_face(identity, on, size).image).any(-1)
            assert changed.sum() > 0, au
            assert not (changed & ~regions[au]).any(), (au, index, int((changed & ~regions[au]).sum()))
            # A region is where the AU acts, not the whole face.
            assert regions[au].mean() < (0.4 if au == "AU26" else 0.2), (au, regions[au].mean())


def test_regions_keep_to_their_part_of_the_face() -> None:
    identity, size = sample_identity(4), 64
    regions = au_regions(identity, {}, size)
    eye = pixel_rows_cols(size, identity.eye_spacing, identity.eye_y)
    mouth = pixel_rows_cols(size, 0.0, identity.mouth_y)
    for au in ("AU10", "AU12", "AU15", "AU20", "AU23", "AU25", "AU26"):
        assert regions[au][mouth] and not regions[au][eye], au
    for au in ("AU05", "AU07", "AU45"):
        assert regions[au][eye] and not regions[au][mouth], au


# --- batches and errors ---------------------------------------------------------------------------------


def test_render_batch_is_the_networks_image_convention() -> None:
    identities = [sample_identity(0, index) for index in range(3)]
    aus = torch.rand(3, NUM_AUS, generator=torch.Generator().manual_seed(0))

    batch = render_batch(identities, aus, size=32)

    assert batch.shape == (3, 3, 32, 32) and batch.dtype == torch.float32
    assert batch.min() >= -1.0 and batch.max() <= 1.0
    torch.testing.assert_close(batch[1], render_face(identities[1], aus[1], 32).to_tensor(), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("aus", "size", "message"),
    [
        ({"AU99": 0.5}, 64, "Unknown Action Unit 'AU99'; valid AUs are AU01"),
        ({"AU12": 1.5}, 64, r"outside \[0, 1\]"),
        (np.zeros(12), 64, r"vector of 17 intensities .* got shape \(12,\)"),
        (np.full(NUM_AUS, np.nan), 64, r"finite and in \[0, 1\]"),
        ({}, 16, "size must be an integer number of pixels from 32 to 512, got 16"),
        ({}, 64.0, "got 64.0"),
    ],
)
def test_bad_input_says_what_to_do(aus: object, size: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        render_face(sample_identity(0), aus, size)  # type: ignore[arg-type]


# --- dataset mode ---------------------------------------------------------------------------------------


def test_sampled_expressions_cover_every_au_in_range() -> None:
    rng = np.random.default_rng(0)
    samples = np.stack([sample_aus(rng) for _ in range(2000)])

    assert samples.shape == (2000, NUM_AUS) and samples.min() >= 0.0 and samples.max() <= 1.0
    assert ((samples > 0.3).mean(axis=0) > 0.03).all()  # every AU clearly present in ≥ 3 % of faces
    assert 0.05 < (samples.sum(axis=1) == 0).mean() < 0.15  # some neutral faces
    assert 0.3 < ((samples > 0).sum(axis=1) >= 3).mean()  # and many with several AUs together


def test_generated_folder_reads_back_with_its_labels_and_identities(tmp_path: Path) -> None:
    assert (
        write_dataset(tmp_path, num_identities=2, per_identity=3, size=64, seed=7, first_identity=10, progress=False)
        == 6
    )

    dataset = FaceAUDataset.from_data_dir(tmp_path, resolution=64, flip=False)

    assert len(dataset) == 6 and dataset.num_with_landmarks == 6
    with open(tmp_path / "aus.csv", newline="") as file:
        rows = {row["file"]: row for row in csv.DictReader(file)}
    for position, file in enumerate(dataset.files):
        image, aus = dataset[position][:2]
        identity_index = int(rows[file]["identity"])
        assert identity_index in (10, 11) and file.startswith(f"id{identity_index:05d}/")
        # The labels are the AUs the face was drawn with, and the image is that face, pixel for pixel.
        expected = render_face(sample_identity(7, identity_index), aus, size=64).to_tensor()
        torch.testing.assert_close(image, expected, rtol=0, atol=0)
        mesh = face_mesh(sample_identity(7, identity_index), aus, size=64)
        np.testing.assert_allclose(dataset[position][2].numpy(), mesh, atol=1e-3)
    with open(tmp_path / IDENTITIES_FILE, newline="") as file:
        identities = list(csv.DictReader(file))
    assert [row["identity"] for row in identities] == ["10", "11"]
    assert float(identities[1]["face_width"]) == sample_identity(7, 11).face_width
    expressions = np.random.default_rng([7, 10, 1])
    np.testing.assert_allclose(dataset.aus[dataset.files.index("id00010/000.png")], sample_aus(expressions), atol=1e-5)


def test_writing_into_a_labelled_folder_is_refused(tmp_path: Path) -> None:
    write_dataset(tmp_path, 1, 1, size=32, progress=False)
    with pytest.raises(ValueError, match="aus.csv already exists: choose another output folder"):
        write_dataset(tmp_path, 1, 1, size=32, progress=False)
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "other"), "--num_identities", "0", "--per_identity", "1"])


def test_command_line_writes_a_training_folder(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "defgan_hf.synthetic",
            "--out",
            str(tmp_path / "faces"),
            "--num_identities",
            "2",
            "--per_identity",
            "2",
            "--size",
            "32",
            "--seed",
            "3",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "4 faces of 2 identities written" in result.stderr
    assert len(FaceAUDataset.from_data_dir(tmp_path / "faces", resolution=32)) == 4


def test_the_face_mesh_puts_its_keypoints_where_the_geometry_draws_them() -> None:
    identity, aus = sample_identity(0, 3), {"AU01": 0.5, "AU12": 1.0, "AU26": 1.0}
    mesh, geometry = face_mesh(identity, aus, size=128), face_geometry(identity, aus)

    def pixels(x: float, y: float) -> tuple[float, float]:
        return (x + 1) * 127 / 2, (y + 1) * 127 / 2

    assert mesh.shape == (478, 2) and ((mesh > 0) & (mesh < 127)).all()
    (corner_x, corner_y), (brow_x, brow_y) = geometry.mouth.corner, geometry.brow.inner
    np.testing.assert_allclose(mesh[[61, 291]], [pixels(-corner_x, corner_y), pixels(corner_x, corner_y)], atol=1e-9)
    np.testing.assert_allclose(mesh[[55, 285]], [pixels(-brow_x, brow_y), pixels(brow_x, brow_y)], atol=1e-9)
    np.testing.assert_allclose(mesh[[13, 14, 152]], [pixels(0, geometry.mouth.upper_inner_y),
                                                     pixels(0, geometry.mouth.lower_inner_y),
                                                     pixels(0, geometry.jaw.chin_y)], atol=1e-9)  # fmt: skip
    # The rest of the mesh follows: the inner lips' points part with the mouth, the eyes' stay on the eyes.
    neutral = face_mesh(identity, {}, size=128)
    assert (mesh[[78, 308, 82, 312]] - neutral[[78, 308, 82, 312]])[:, 1].max() < 0  # upper inner lip: up
    assert (mesh[[87, 317]] - neutral[[87, 317]])[:, 1].min() > 1  # lower inner lip: down
    eye_centre = pixels(-geometry.eye.centre[0], geometry.eye.centre[1])
    assert np.linalg.norm(mesh[[33, 133, 159, 145, 468]].mean(axis=0) - eye_centre) < 0.3 * geometry.eye.half_width * 63.5


def test_a_motion_model_fitted_on_drawn_faces_moves_them_as_the_renderer_does(tmp_path: Path) -> None:
    write_dataset(tmp_path, num_identities=100, per_identity=6, size=64, progress=False)
    model = fit_motion_data(read_motion_data(tmp_path), image_size=64)

    assert model.supported_aus == list(AU_NAMES) and not model.prior_aus
    identity = sample_identity(0, 0)
    for au, landmark in (("AU01", 55), ("AU04", 285), ("AU12", 291), ("AU15", 61), ("AU26", 152)):
        drawn = face_mesh(identity, {au: 1.0}, size=64)[landmark] - face_mesh(identity, {}, size=64)[landmark]
        fitted = model.au_motion(au)[landmark].numpy()
        assert np.linalg.norm(fitted - drawn) < 0.15 * np.linalg.norm(drawn), (au, fitted, drawn)
