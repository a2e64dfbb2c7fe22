"""SFace in torch: equal to OpenCV's recogniser on real faces, differentiable, and a sound identity metric."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from defgan_hf.assets import fetch
from defgan_hf.face import FACE_CROP_MARGIN, NoFaceError, align_face, detect_face
from defgan_hf.images import image_to_tensor, load_image
from defgan_hf.identity import SFACE_SIZE, SFace, identity_distance, load_identity_model

OTHER_PEOPLE = ("single_face.jpg", "0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg", "45-m7-di-ph.jpg",
                "Image_with_alpha.png")  # fmt: skip
VIDEO_FRAMES = (0, 200, 300, 400, 460)  # one woman, crying, then laughing


@pytest.fixture(scope="module")
def sface() -> SFace:
    return SFace.from_onnx()


@pytest.fixture(scope="module")
def video_frames(sample_media) -> list[Image.Image]:
    capture = cv2.VideoCapture(str(sample_media("WolfgangLanger_Pexels.mp4")))
    frames = []
    for index in range(max(VIDEO_FRAMES) + 1):
        ok, frame = capture.read()
        assert ok, f"frame {index} of the sample video could not be read"
        if index in VIDEO_FRAMES:
            frames.append(Image.fromarray(np.ascontiguousarray(frame[:, :, ::-1])))
    return frames


def tight_crops(photos) -> list[Image.Image]:
    return [align_face(photo, detect_face(photo), SFACE_SIZE, margin=0.0).image for photo in photos]


def test_torch_sface_matches_opencv_on_real_faces(sface, sample_media, video_frames):
    crops = tight_crops([load_image(sample_media(name)) for name in OTHER_PEOPLE] + video_frames[:2])
    with torch.no_grad():
        ours = sface.embed_aligned(torch.cat([image_to_tensor(crop) for crop in crops])).numpy()
    recogniser = cv2.FaceRecognizerSF.create(str(fetch("sface")), "")
    for crop, embedding in zip(crops, ours):
        # OpenCV takes BGR crops and swaps them to RGB for the network.
        reference = recogniser.feature(np.ascontiguousarray(np.asarray(crop)[:, :, ::-1]))[0]
        assert np.abs(embedding - reference).max() < 1e-4
        assert np.abs(reference).max() > 0.5  # a real embedding, not zeros


def test_frames_of_one_person_are_closer_than_different_people(sface, sample_media, video_frames):
    others = [load_image(sample_media(name)) for name in OTHER_PEOPLE]
    with torch.no_grad():
        embeddings = sface.embed_aligned(torch.cat([image_to_tensor(c) for c in tight_crops(video_frames + others)]))
    frames, strangers = embeddings[: len(video_frames)], embeddings[len(video_frames) :]
    distance = lambda a, b: 1 - F.cosine_similarity(a, b, dim=0).item()  # noqa: E731
    same = [distance(a, b) for a, b in itertools.combinations(frames, 2)]
    different = [distance(a, b) for a in frames for b in strangers]
    different += [distance(a, b) for a, b in itertools.combinations(strangers, 2)]
    assert max(same) < min(different)


def test_identity_distance_between_photos(video_frames, sample_media):
    laughing, crying = video_frames[-1], video_frames[0]
    stranger = sample_media("0-f15-hao-ph.jpg")
    assert identity_distance(laughing, laughing) < 1e-5
    assert identity_distance(laughing, crying) < identity_distance(laughing, stranger)
    with pytest.raises(NoFaceError):
        identity_distance(laughing, sample_media("free-mountain-vector-01.jpg"))


def test_defgan_face_crops_embed_like_the_tight_crop(sface, sample_media):
    """Calling the module on DefGAN's 128×128 crops resamples them to the tight crop SFace expects."""
    photos = [load_image(sample_media(name)) for name in OTHER_PEOPLE[:3]]
    crops = torch.cat([image_to_tensor(align_face(p, detect_face(p), 128, FACE_CROP_MARGIN).image) for p in photos])
    with torch.no_grad():
        from_crops = sface(crops)
        from_tight = sface.embed_aligned(torch.cat([image_to_tensor(crop) for crop in tight_crops(photos)]))
    similarity = F.cosine_similarity(from_crops[:, None], from_tight[None], dim=2)
    assert torch.all(similarity.diagonal() > 0.9)
    off_diagonal = similarity[~torch.eye(len(photos), dtype=torch.bool)]
    assert similarity.diagonal().min() > off_diagonal.max()


def test_sface_is_a_frozen_differentiable_instrument(sface, sample_media):
    photo = load_image(sample_media("single_face.jpg"))
    crop = image_to_tensor(align_face(photo, detect_face(photo)).image).requires_grad_(True)
    sface.train()
    assert not sface.training and not any(module.training for module in sface.modules())
    assert not any(parameter.requires_grad for parameter in sface.parameters())
    embedding = sface(crop)
    assert embedding.shape == (1, 128)
    (1 - F.cosine_similarity(embedding, embedding.detach() + 0.1)).sum().backward()
    assert torch.isfinite(crop.grad).all() and crop.grad.abs().sum() > 0


def test_the_identity_model_for_training(sface):
    model = load_identity_model("sface")
    assert isinstance(model, SFace) and model.crop_margin == FACE_CROP_MARGIN
    with pytest.raises(ValueError, match="sface"):
        load_identity_model("openface")


def test_wrong_inputs_are_refused(sface):
    with pytest.raises(ValueError, match="112"):
        sface.embed_aligned(torch.zeros(1, 3, 128, 128))
    with pytest.raises(ValueError, match="square"):
        sface(torch.zeros(1, 3, 128, 96))
    with pytest.raises(ValueError, match="SFace"):
        SFace.from_onnx(fetch("yunet"))
