"""DefGANPipeline on real photos: whole photo in, whole photo out, only the face region edited."""

import numpy as np
import pytest
import torch
from PIL import Image

from defgan_hf import AU_NAMES, EXPRESSIONS, DefGAN, DeformationGenerator, Discriminator, TextureGenerator, edit_target
from defgan_hf.face import NoFaceError, paste_mask
from defgan_hf.images import image_to_tensor
from defgan_hf import DefGANPipeline


@pytest.fixture(scope="module")
def pipeline() -> DefGANPipeline:
    torch.manual_seed(0)
    sizes = dict(image_size=128, width=8, num_res_blocks=1)
    model = DefGAN(TextureGenerator(**sizes), DeformationGenerator(**sizes))
    return DefGANPipeline(model, Discriminator(image_size=128, width=8))


def test_edit_returns_the_whole_photo_changed_only_around_the_face(pipeline, sample_media):
    photo = Image.open(sample_media("single_face.jpg")).convert("RGB")
    out = pipeline(photo, expression="surprise", intensity=0.9)
    assert out.image.size == photo.size
    before, after = np.asarray(photo, dtype=int), np.asarray(out.image, dtype=int)
    changed = np.abs(after - before).max(axis=2) > 0
    assert changed.any()
    # Everything outside the paste-back region is untouched, and that region hugs the detected face.
    outside = paste_mask(out.aligned) == 0
    assert not changed[outside].any()
    left, top, right, bottom = out.aligned.face.box
    rows, cols = np.nonzero(changed)
    face_width = right - left
    assert cols.min() >= left - face_width and cols.max() <= right + face_width
    assert rows.min() >= top - face_width and rows.max() <= bottom + face_width
    assert changed.mean() < 0.6  # a portrait: the face, not the photo


def test_the_photo_is_edited_at_its_own_resolution_warped_and_textured_under_the_mask(pipeline, sample_media):
    """The edit is applied to the photo itself (paste_edit), not as the 128 px crop pasted back."""
    from defgan_hf.face import paste_edit
    from defgan_hf.warp import grid_offsets_px

    photo = Image.open(sample_media("0-f15-hao-ph.jpg")).convert("RGB")
    out = pipeline(photo, expression="surprise")
    crop = image_to_tensor(out.aligned.image)
    with torch.no_grad():
        edit = pipeline.model(crop, out.source_aus[None], out.target_aus[None])
    expected = paste_edit(photo, out.aligned, grid_offsets_px(edit.grid)[0].numpy(),
                          ((edit.color[0].permute(1, 2, 0) + 1) * 127.5).numpy(), edit.mask[0, 0].numpy())
    assert out.image.tobytes() == expected.tobytes()


def test_views_have_the_crop_size(pipeline, sample_media):
    out = pipeline(sample_media("single_face.jpg"), expression="happy")
    for view in (out.crop, out.deformed, out.edited_crop, out.mask, out.deformation, out.difference):
        assert view.size == (128, 128)
    assert out.grid.shape == (1, 128, 128, 2)


def test_source_aus_come_from_the_landmarks_and_read_a_smile(pipeline, sample_media):
    """The posed happy face smiles: AU12 is its strongest mouth AU."""
    out = pipeline(sample_media("0-f15-hao-ph.jpg"))
    source = out.aus_dict("source")
    assert source["AU12"] > 0.5 and source["AU12"] > source["AU15"]
    assert torch.equal(out.target_aus, out.source_aus)  # no expression and no AUs: no edit asked


def test_targets_from_presets_and_named_aus():
    source = torch.full((17,), 0.2)
    happy = edit_target(source, "happy", 1.0)
    assert torch.allclose(happy, EXPRESSIONS["happy"])
    half = edit_target(source, "happy", 0.5)
    assert torch.allclose(half, (source + EXPRESSIONS["happy"]) / 2)
    absolute = edit_target(source, aus={"AU12": 0.9, "au26": 0.5})
    assert absolute[AU_NAMES.index("AU12")] == pytest.approx(0.9)
    assert absolute[AU_NAMES.index("AU26")] == pytest.approx(0.5)
    assert absolute[AU_NAMES.index("AU01")] == pytest.approx(0.2)
    relative = edit_target(source, aus={"AU12": 0.5, "AU15": -0.5}, relative=True)
    assert relative[AU_NAMES.index("AU12")] == pytest.approx(0.7)
    assert relative[AU_NAMES.index("AU15")] == pytest.approx(0.0)  # clipped at 0
    combined = edit_target(source, "sad", 1.0, aus={"AU04": 0.0})
    assert combined[AU_NAMES.index("AU04")] == 0.0
    assert combined[AU_NAMES.index("AU15")] == EXPRESSIONS["sad"][AU_NAMES.index("AU15")]


def test_bad_requests_fail_before_any_detection(pipeline, tmp_path):
    not_a_photo = tmp_path / "missing.jpg"  # never opened: argument errors come first
    with pytest.raises(ValueError, match="valid expressions"):
        pipeline(not_a_photo, expression="joyful")
    with pytest.raises(ValueError, match="valid AUs"):
        pipeline(not_a_photo, aus={"AU99": 0.5})
    with pytest.raises(ValueError, match="divided by 5"):
        pipeline(not_a_photo, aus={"AU12": 3.0})


def test_photo_without_a_face_raises_no_face_error(pipeline, sample_media):
    with pytest.raises(NoFaceError):
        pipeline(sample_media("free-mountain-vector-01.jpg"), expression="happy")


def test_face_index_selects_another_face(pipeline, sample_media):
    first = pipeline(sample_media("multi_face.jpg"), face_index=0)
    second = pipeline(sample_media("multi_face.jpg"), face_index=1)
    assert first.aligned.face.size >= second.aligned.face.size
    assert first.aligned.face.box != second.aligned.face.box


def test_a_list_of_photos_gives_a_list_of_edits(pipeline, sample_media):
    outs = pipeline([sample_media("single_face.jpg"), sample_media("0-f1-su-ph.jpg")], expression="sad")
    assert [type(out).__name__ for out in outs] == ["DefGANPipelineOutput"] * 2


def test_from_pretrained_folder_with_discriminator_au_source(pipeline, tmp_path, sample_media):
    pipeline.model.save_pretrained(tmp_path, discriminator=pipeline.discriminator)
    loaded = DefGANPipeline.from_pretrained(tmp_path, au_source="discriminator")
    assert loaded.discriminator is not None and loaded.deformer is not None
    out = loaded(sample_media("single_face.jpg"))
    assert out.source_aus.min() >= 0 and out.source_aus.max() <= 1
    with torch.no_grad():
        expected = pipeline.discriminator(image_to_tensor(out.crop)).aus[0].clamp(0, 1)
    assert torch.allclose(out.source_aus, expected, atol=1e-5)


def test_texture_only_model_without_discriminator(tmp_path, sample_media):
    sizes = dict(image_size=128, width=8, num_res_blocks=1)
    DefGAN(TextureGenerator(**sizes)).save_pretrained(tmp_path)
    pipe = DefGANPipeline.from_pretrained(tmp_path)
    assert pipe.deformer is None and pipe.discriminator is None
    out = pipe(sample_media("single_face.jpg"), expression="angry")
    assert out.deformed == out.crop  # no motion: the deformed crop is the input crop
    with pytest.raises(ValueError, match="needs a discriminator"):
        DefGANPipeline.from_pretrained(tmp_path, au_source="discriminator")
