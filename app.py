"""DefGAN in the browser: edit the expression of a face in a photo (a Gradio app and Hugging Face Space).

    python app.py [--model REPO_ID_OR_FOLDER] [--server_name 0.0.0.0] [--port 7860] [--threads N]

Without ``--model`` the app runs the default model embedded in the package (``defgan_hf/default_model``, a
small demo-quality DefGAN; the page says so and links its model card). The page wires widgets to
:class:`~defgan_hf.pipeline.DefGANPipeline`: a photo is detected and aligned once when it arrives, and
every change of the expression, the intensity or an Action Unit slider only re-runs the networks on
that aligned face (:meth:`~defgan_hf.pipeline.DefGANPipeline.edit_face`). The ``/edit`` endpoint is the
same edit for API clients, from a photo to the edited photo in one call (see the README).
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Sequence
from functools import partial
from typing import Any

import gradio as gr
import torch
from PIL import UnidentifiedImageError

from defgan_hf import AU_FACS_NAMES, AU_NAMES, EXPRESSIONS, edit_target
from defgan_hf.aus import AU_REGIONS
from defgan_hf.assets import SAMPLE_MEDIA, AssetError, fetch
from defgan_hf.face import NoFaceError
from defgan_hf.pipeline import DEFAULT_MODEL, DefGANPipeline, DefGANPipelineOutput, DetectedFace

logger = logging.getLogger("defgan-app")

CONCURRENCY_LIMIT = 1
"""Edits that run at once: one edit already keeps both cores of a CPU Space busy; the rest wait in the queue."""

QUEUE_SIZE = 32
"""Requests that may wait; beyond that a visitor is told the app is busy."""


def default_threads() -> int:
    """Torch threads per edit: half the CPU cores this process may use, at least 1 (1 on a 2-core Space).

    A Space's CPU is shared, and MediaPipe and the web server run threads of their own: on a busy 2-core
    machine an edit took 2.6 s with two torch threads and 0.42 s with one (BENCHMARKS.md).
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // 2)


STATE_SECONDS, STATE_SESSIONS = 3600, 100
"""How long, and for how many visitors at most, a detected photo is kept for slider edits."""

SLIDER_STEP = 0.01


def _slider_groups() -> dict[str, tuple[str, ...]]:
    groups, placed = {}, set()
    for region, names in AU_REGIONS.items():
        groups[region.capitalize()] = tuple(name for name in names if name not in placed)
        placed.update(names)
    return groups


SLIDER_GROUPS: dict[str, tuple[str, ...]] = _slider_groups()
"""Page layout: the sliders of each face region of :data:`defgan_hf.aus.AU_REGIONS`, top to bottom; an AU
that acts on two regions is shown in the first."""

EXAMPLE_PHOTOS = ("single_face.jpg", "0-f15-hao-ph.jpg", "0-f1-su-ph.jpg", "45-m7-di-ph.jpg", "multi_face.jpg",
                  "free-mountain-vector-01.jpg")  # fmt: skip
"""Example photos (names in :data:`defgan_hf.assets.SAMPLE_MEDIA`); the last has no face, to show the message."""

DEFAULT_MODEL_NOTICE = (
    "**Model:** the default model embedded in defgan-hf (`defgan_hf/default_model`), a DefGAN (deformation + "
    "texture) editing 128 px face crops and warping the photo at its own resolution. It is a **small demo-quality "
    "model, trained on a CPU on the faces of few people**: expect edits weaker than asked, made by motion alone "
    "(no teeth or closing lids yet). Its model card (`defgan_hf/default_model/README.md`) gives the data, the "
    "evaluation and the limitations; `python app.py --model REPO_ID_OR_FOLDER` runs another model."
)


def load_pipeline(model: str | None) -> tuple[DefGANPipeline, str]:
    """The pipeline the app runs, and the Markdown line that tells visitors which model it is.

    Args:
        model: a DefGAN repo (Hub repo id or local folder); None for the package's default model.
    """
    if model is None:
        if not DEFAULT_MODEL.is_dir():
            raise SystemExit(f"The default model folder {DEFAULT_MODEL} is missing from this installation: "
                             "reinstall defgan-hf, or pass --model REPO_ID_OR_FOLDER.")
        return DefGANPipeline.from_pretrained(DEFAULT_MODEL), DEFAULT_MODEL_NOTICE
    pipeline = DefGANPipeline.from_pretrained(model)
    kind = ("a texture-only model (the GANimation ablation: no deformation)" if pipeline.deformer is None
            else "a DefGAN model (deformation + texture)")  # fmt: skip
    return pipeline, f"**Model:** `{model}`, {kind}, editing {pipeline.image_size} px face crops."


# ---------------------------------------------------------------------------------------------------
# What the page does


class UserError(Exception):
    """A problem with the visitor's input, with a message that says what to do."""


def explain(error: Exception) -> UserError:
    """Turn an input error of the pipeline into a message for the page."""
    if isinstance(error, UnidentifiedImageError):
        return UserError("Could not read the file as an image. Use a photo: JPEG, PNG, WebP, BMP or TIFF.")
    if isinstance(error, OSError):
        return UserError(f"Could not read the file as an image ({error}). It may be damaged; try another photo.")
    return UserError(str(error))


def photo_path(image: dict[str, Any] | None) -> str | None:
    """The uploaded file of the photo input, as events with ``preprocess=False`` receive it.

    Those events take the upload as it arrived (gradio has already checked that it is an upload), so that
    a file Pillow cannot open reaches the pipeline and becomes a message, instead of failing in gradio's
    own image preprocessing with an error meant for developers.
    """
    return None if image is None else image["path"]


def detect(pipeline: DefGANPipeline, image: str, face_index: int) -> DetectedFace:
    """Detect, align and read the expression of face ``face_index`` (0: the largest) of a photo file."""
    try:
        return pipeline.detect(image, face_index)
    except (NoFaceError, ValueError, OSError) as error:
        raise explain(error) from error


def slider_values(face: DetectedFace | None, target: torch.Tensor, relative: bool) -> list[float]:
    """The 17 slider positions that show ``target``: the AUs themselves, or their change from the source."""
    source = face.source_aus if face is not None else torch.zeros(len(AU_NAMES))
    shown = target - source if relative else target
    return [round(float(value), 2) for value in shown]


def slider_target(face: DetectedFace, relative: bool, values: Sequence[float]) -> torch.Tensor:
    """The target AUs the sliders show."""
    return edit_target(face.source_aus, aus=dict(zip(AU_NAMES, values)), relative=relative)


def top_aus(aus: torch.Tensor, count: int = 3) -> str:
    """The strongest AUs of a ``(17,)`` vector, named, for the status line."""
    strongest = sorted(zip(AU_NAMES, aus.tolist()), key=lambda item: -item[1])[:count]
    return ", ".join(f"{name} {AU_FACS_NAMES[name]} {value:.2f}" for name, value in strongest if value >= 0.05) or "none"


def edit(pipeline: DefGANPipeline, face: DetectedFace, target: torch.Tensor) -> tuple[Any, ...]:
    """Edit the detected face toward ``target``; the page's result views and a status line."""
    start = time.perf_counter()
    out = pipeline.edit_face(face, target_aus=target)
    seconds = time.perf_counter() - start
    status = (f"Edited in {seconds:.2f} s. Detected expression: {top_aus(face.source_aus)}. "
              f"Target: {top_aus(out.target_aus)}.")  # fmt: skip
    return (face.photo, out.image), out.deformed, out.mask, out.deformation, out.difference, status


NO_RESULT = (None, None, None, None, None)


def page_message(error: UserError) -> str:
    """Show an input error in the page (a pop-up and the status line)."""
    gr.Warning(str(error))
    return f"⚠️ {error}"


def on_photo(pipeline: DefGANPipeline, image: dict[str, Any] | None, expression: str | None, intensity: float,
             relative: bool, face_index: float) -> tuple[Any, ...]:  # fmt: skip
    """A new photo: detect its face, set the sliders to its expression (or to the chosen preset), edit."""
    skip_sliders = [gr.skip()] * len(AU_NAMES)
    path = photo_path(image)
    if path is None:
        return None, *skip_sliders, *NO_RESULT, "Upload a photo, take one with the webcam, or pick an example."
    try:
        face = detect(pipeline, path, int(face_index or 0))
    except UserError as error:
        return None, *skip_sliders, *NO_RESULT, page_message(error)
    target = edit_target(face.source_aus, expression or None, intensity)
    values = slider_values(face, target, relative)
    return face, *values, *edit(pipeline, face, slider_target(face, relative, values))


def on_expression(pipeline: DefGANPipeline, face: DetectedFace | None, expression: str | None, intensity: float,
                  relative: bool) -> tuple[Any, ...]:  # fmt: skip
    """A preset or intensity was chosen: move the sliders to it and edit."""
    if face is None:
        return *[gr.skip()] * (len(AU_NAMES) + len(NO_RESULT)), "Upload a photo first."
    target = edit_target(face.source_aus, expression or None, intensity)
    values = slider_values(face, target, relative)
    return *values, *edit(pipeline, face, slider_target(face, relative, values))


def on_sliders(pipeline: DefGANPipeline, face: DetectedFace | None, relative: bool, *values: float) -> tuple[Any, ...]:
    """A slider was released: edit with the sliders' AUs (no detection)."""
    if face is None:
        return *[gr.skip()] * len(NO_RESULT), "Upload a photo first."
    try:
        target = slider_target(face, relative, values)
    except ValueError as error:  # a value typed into a slider's box, out of its range
        return *[gr.skip()] * len(NO_RESULT), page_message(explain(error))
    return edit(pipeline, face, target)


def on_reset(pipeline: DefGANPipeline, face: DetectedFace | None, relative: bool) -> tuple[Any, ...]:
    """Back to the detected expression: no preset, sliders at the source AUs."""
    if face is None:
        return None, *slider_values(None, torch.zeros(len(AU_NAMES)), relative), *NO_RESULT, "Upload a photo first."
    values = slider_values(face, face.source_aus, relative)
    return None, *values, *edit(pipeline, face, slider_target(face, relative, values))


def on_relative(face: DetectedFace | None, relative: bool, *values: float) -> list[gr.Slider]:
    """Switch the sliders between absolute AUs in [0, 1] and changes from the source in [-1, 1], same target."""
    source = face.source_aus if face is not None else torch.zeros(len(AU_NAMES))
    # What the sliders showed before the switch: the AUs themselves, or (now switched off) changes from the source.
    target = edit_target(source, aus=dict(zip(AU_NAMES, values)), relative=not relative)
    new_values = slider_values(face, target, relative)
    low = -1.0 if relative else 0.0
    return [gr.Slider(minimum=low, maximum=1.0, value=value) for value in new_values]


def api_edit(pipeline: DefGANPipeline, image: dict[str, Any] | None, expression: str | None, intensity: float,
             aus: dict[str, float] | None, relative: bool, face_index: float) -> tuple[Any, ...]:  # fmt: skip
    """Edit the expression of a face in a photo; returns the edited photo first."""
    path = photo_path(image)
    if path is None:
        raise gr.Error("No photo was given.")
    if not isinstance(aus, dict | None):
        raise gr.Error(f'aus must be a JSON object of AU names and values, e.g. {{"AU12": 0.9}}; got {aus!r}.')
    try:
        out: DefGANPipelineOutput = pipeline(path, expression or None, intensity, aus or None, relative,
                                             int(face_index or 0))  # fmt: skip
    except (NoFaceError, ValueError, OSError) as error:
        raise gr.Error(str(explain(error))) from error
    return (out.image, out.deformed, out.mask, out.deformation, out.difference,
            {"source": out.aus_dict("source"), "target": out.aus_dict("target")})  # fmt: skip


# ---------------------------------------------------------------------------------------------------
# The page


def example_photos() -> tuple[dict[str, str], str]:
    """Label → path of the example photos that could be fetched, and the line that credits them."""
    paths, origins = {}, set()
    for name in EXAMPLE_PHOTOS:
        try:
            paths[name.rsplit(".", 1)[0]] = str(fetch(name))
            origins.add(SAMPLE_MEDIA[name].origin)
        except AssetError as error:
            logger.warning("Example photo %s is not available: %s", name, error)
    credit = "; ".join(sorted(origins)) or "none could be fetched (run `defgan-fetch-assets`)"
    return paths, f"Example photos: {credit}. Sources and terms: NOTICE."


CSS = """
#model-notice { border: 2px solid #d97706; border-radius: 8px; padding: 4px 12px; background: #fef3c7; color: #111; }
#model-notice p, #model-notice strong { color: #111; }
"""


def build_demo(pipeline: DefGANPipeline, model_notice: str) -> gr.Blocks:
    """The page, wired to ``pipeline``."""
    examples, credit = example_photos()
    with gr.Blocks(title="DefGAN: edit facial expressions", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(
            "# DefGAN: edit the expression of a face\n"
            "Upload a photo, pick an expression or move the Action Unit (AU) sliders: DefGAN moves the face "
            "with a learned deformation, then adds texture (teeth, wrinkles) where a warp cannot; only the face "
            "in the photo changes."
        )
        gr.Markdown(model_notice, elem_id="model-notice")
        face = gr.State(None, time_to_live=STATE_SECONDS)
        with gr.Row():
            with gr.Column(scale=1):
                photo = gr.Image(label="Photo", type="filepath", image_mode=None,
                                 sources=["upload", "webcam", "clipboard"], elem_id="photo")  # fmt: skip
                if examples:
                    gr.Examples([[path] for path in examples.values()], inputs=[photo], label="Example photos",
                                example_labels=list(examples), api_visibility="private")  # fmt: skip
                gr.Markdown(credit, elem_id="example-credit")
                expression = gr.Dropdown(list(EXPRESSIONS), value=None, label="Expression (a preset)",
                                         elem_id="expression")  # fmt: skip
                intensity = gr.Slider(0.0, 1.0, value=1.0, step=SLIDER_STEP, label="Intensity",
                                      info="0 keeps the detected expression, 1 reaches the preset",
                                      buttons=[], elem_id="intensity")  # fmt: skip
                face_index = gr.Number(0, precision=0, minimum=0, label="Face (0 is the largest)", elem_id="face-index")
            with gr.Column(scale=2):
                status = gr.Markdown("Upload a photo, take one with the webcam, or pick an example.",
                                     elem_id="status")  # fmt: skip
                before_after = gr.ImageSlider(label="Before / after (the download button saves the edited photo)",
                                              type="pil", format="png", interactive=False,
                                              elem_id="before-after")  # fmt: skip
                with gr.Row():
                    view = {"type": "pil", "format": "png", "interactive": False, "min_width": 120}
                    motion = gr.Image(label="Motion only", elem_id="motion", **view)
                    mask = gr.Image(label="Attention mask", elem_id="mask", **view)
                    deformation = gr.Image(label="Deformation", elem_id="deformation", **view)
                    difference = gr.Image(label="Difference", elem_id="difference", **view)
                gr.Markdown(
                    "The face crop the networks see: *motion only* is the deformed face before texture; the "
                    "*attention mask* is white where new texture replaces it; the *deformation* bends a lattice "
                    "as the face moves; the *difference* shows where the edit changed the crop (black: unchanged)."
                )
        with gr.Accordion("Action Units (released sliders re-edit the face)", open=True):
            with gr.Row():
                relative = gr.Checkbox(False, label="Relative: sliders are changes from the detected expression",
                                       elem_id="relative")  # fmt: skip
                reset = gr.Button("Reset to the detected expression", elem_id="reset")
            by_name = {}
            with gr.Row():
                for region, names in SLIDER_GROUPS.items():
                    with gr.Column(min_width=220):
                        gr.Markdown(f"**{region}**")
                        for name in names:
                            by_name[name] = gr.Slider(0.0, 1.0, value=0.0, step=SLIDER_STEP, buttons=[],
                                                      label=f"{name} {AU_FACS_NAMES[name]}", elem_id=f"slider-{name}")
            sliders = [by_name[name] for name in AU_NAMES]

        # The API: stateless, one call from a photo to the edited photo.
        with gr.Row(visible=False):
            aus = gr.JSON({}, label="aus")
            edited_photo = gr.Image(label="Edited photo", type="pil", format="png")
            aus_out = gr.JSON(label="Source and target AUs")
            api_button = gr.Button()

        results = [before_after, motion, mask, deformation, difference, status]
        # One edit at a time; a change made while an edit runs is applied after it (the last change wins).
        model_event = {"concurrency_id": "model", "concurrency_limit": CONCURRENCY_LIMIT, "api_visibility": "private",
                       "trigger_mode": "always_last"}  # fmt: skip
        new_photo = {"fn": partial(on_photo, pipeline), "inputs": [photo, expression, intensity, relative, face_index],
                     "outputs": [face, *sliders, *results], "preprocess": False, **model_event}  # fmt: skip
        photo.change(**new_photo)
        face_index.input(**new_photo)
        gr.on([expression.select, intensity.release], partial(on_expression, pipeline),
              [face, expression, intensity, relative], [*sliders, *results], **model_event)  # fmt: skip
        gr.on([slider.release for slider in sliders], partial(on_sliders, pipeline), [face, relative, *sliders],
              results, **model_event)  # fmt: skip
        reset.click(partial(on_reset, pipeline), [face, relative], [expression, *sliders, *results], **model_event)
        relative.input(on_relative, [face, relative, *sliders], sliders, api_visibility="private", queue=False)
        api_button.click(partial(api_edit, pipeline), [photo, expression, intensity, aus, relative, face_index],
                         [edited_photo, motion, mask, deformation, difference, aus_out], preprocess=False,
                         api_name="edit",
                         api_description="Edit the expression of the largest face (or face `face_index`) of a "
                         "photo toward a preset `expression` at `intensity` in [0, 1]; `aus` sets named AUs "
                         "(e.g. {\"AU12\": 0.9}) or, with `relative`, adds to them. Returns the edited photo, "
                         "the motion-only crop, the attention mask, the deformation field, the difference "
                         "heat map and the source and target AUs.",
                         concurrency_id="model", concurrency_limit=CONCURRENCY_LIMIT)  # fmt: skip
    return demo


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="DefGAN repo: a Hub repo id or a local folder "
                        "(default: the model embedded in the package).")  # fmt: skip
    parser.add_argument("--server_name", default=None, help="Address to listen on (default: $GRADIO_SERVER_NAME "
                        "or 127.0.0.1; 0.0.0.0 to accept other machines).")  # fmt: skip
    parser.add_argument("--port", type=int, default=None, help="Port (default: $GRADIO_SERVER_PORT or 7860).")
    parser.add_argument("--threads", type=int, default=None, help="Torch threads per edit (default: half the CPU "
                        f"cores, at least 1: {default_threads()} here).")  # fmt: skip
    args = parser.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}.")
    torch.set_num_threads(args.threads or default_threads())
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    pipeline, notice = load_pipeline(args.model)
    print(notice)
    try:  # the first edit loads the face landmarker: do it before the first visitor waits for it
        pipeline(fetch(EXAMPLE_PHOTOS[0]))
    except AssetError as error:
        logger.warning("No warm-up edit: %s", error)
    demo = build_demo(pipeline, notice)
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=CONCURRENCY_LIMIT)
    demo.launch(server_name=args.server_name, server_port=args.port, css=CSS, footer_links=["api", "gradio"],
                max_file_size="50mb", state_session_capacity=STATE_SESSIONS, show_error=True)  # fmt: skip


if __name__ == "__main__":
    main()
