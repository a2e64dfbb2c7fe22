"""DefGANPipeline: edit the expression of a face in a whole photo.

photo → detect the face (MediaPipe) → aligned crop at the model's resolution → source AUs → target
AUs (a preset expression and intensity, and/or named AUs) → DefGAN on the crop → the edit applied to the
photo at its own resolution (:func:`defgan_hf.face.paste_edit`): the photo itself is warped by the crop's
deformation and the texture is blended in under the attention mask only, so the face keeps the photo's
detail and only the face region of the photo changes.

A model folder with a motion model (:mod:`defgan_hf.motion`) can also edit by motion alone, with no
network: the crop warped by the grid the motion model draws through the face's own landmarks
(``motion_model_only=True``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image

from .au_estimation import estimate_aus
from .aus import AU_NAMES, NUM_AUS, edit_target
from .face import AlignedFace, align_face, detect_face, paste_edit
from .images import image_to_tensor, load_image, tensor_to_image
from .models import (DISCRIMINATOR_FOLDER, MOTION_FOLDER, DefGAN, DefGANOutput, DeformationGenerator, Discriminator,
                     TextureGenerator)  # fmt: skip
from .motion import MotionModel
from .visualize import deformation_lines, difference_heatmap, mask_to_image
from .warp import grid_offsets_px, warp

PhotoInput = str | Path | Image.Image | np.ndarray

DEFAULT_MODEL: Path = Path(__file__).resolve().parent / "default_model"
"""The model embedded in the package, which the app runs when no other is named (a DefGAN repo folder)."""
AUSource = Literal["landmarks", "discriminator"]


@dataclass(frozen=True)
class DetectedFace:
    """A face found in a photo, aligned and read once, ready to be edited toward any number of targets.

    Attributes:
        photo: the whole RGB photo.
        aligned: the face's crop at the model's resolution and its alignment in the photo.
        source_aus: ``(17,)`` in ``[0, 1]``, the expression read from the face.
    """

    photo: Image.Image
    aligned: AlignedFace
    source_aus: torch.Tensor

    @property
    def landmarks(self) -> torch.Tensor:
        """``(478, 2)`` float32 face-mesh landmarks in pixels of the aligned crop."""
        return torch.from_numpy(self.aligned.crop_landmarks.astype("float32"))


@dataclass
class DefGANPipelineOutput:
    """One edited face, with the views that explain the edit.

    Attributes:
        image: the whole photo with only the face's expression changed (same size as the input).
        crop: the aligned face crop the model saw (``S × S``).
        deformed: the motion-only edit of the crop, ``I*_y``.
        edited_crop: the final edit of the crop, ``I_y``.
        mask: the attention mask ``M`` as a grey image (white: new texture).
        deformation: the deformation grid drawn as a warped lattice over the crop.
        difference: heat map of ``|I_y − I_x|`` on the crop.
        source_aus: ``(17,)`` in ``[0, 1]``, the estimated expression of the input.
        target_aus: ``(17,)`` in ``[0, 1]``, the expression asked for.
        grid: ``(1, S, S, 2)`` the deformation grid.
        aligned: the crop's alignment in the photo.
    """

    image: Image.Image
    crop: Image.Image
    deformed: Image.Image
    edited_crop: Image.Image
    mask: Image.Image
    deformation: Image.Image
    difference: Image.Image
    source_aus: torch.Tensor
    target_aus: torch.Tensor
    grid: torch.Tensor
    aligned: AlignedFace

    def aus_dict(self, which: Literal["source", "target"] = "target") -> dict[str, float]:
        """The source or target AUs by name."""
        vector = self.source_aus if which == "source" else self.target_aus
        return {name: float(value) for name, value in zip(AU_NAMES, vector)}


class DefGANPipeline:
    """Edit facial expressions in photos with a DefGAN model.

    Args:
        model: the generators.
        discriminator: its AU head can estimate the source expression (``au_source="discriminator"``).
        au_source: how the expression of the input face is estimated: ``"landmarks"`` (MediaPipe's
            blendshapes and landmarks, as ``defgan-annotate`` labels training data, so the model is
            conditioned the way it was trained) or ``"discriminator"`` (the discriminator's AU head).
        motion_model: the motion model of the model folder, for edits by motion alone (or None).
    """

    def __init__(self, model: DefGAN, discriminator: Discriminator | None = None,
                 au_source: AUSource = "landmarks", motion_model: MotionModel | None = None) -> None:
        if au_source not in ("landmarks", "discriminator"):
            raise ValueError(f"au_source must be 'landmarks' or 'discriminator', got {au_source!r}.")
        if au_source == "discriminator" and discriminator is None:
            raise ValueError("au_source='discriminator' needs a discriminator; this model folder has none.")
        self.model = model.eval()
        self.discriminator = discriminator.eval() if discriminator is not None else None
        self.au_source = au_source
        if motion_model is not None and motion_model.image_size != model.image_size:
            raise ValueError(f"The motion model works on {motion_model.image_size}px crops but the model on "
                             f"{model.image_size}px; fit the motion model at the model's size.")  # fmt: skip
        self.motion_model = motion_model

    @property
    def deformer(self) -> DeformationGenerator | None:
        """The deformation generator (None for a texture-only model)."""
        return self.model.deformer

    @property
    def texturer(self) -> TextureGenerator:
        """The texture generator."""
        return self.model.texturer

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def image_size(self) -> int:
        return self.model.image_size

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *, device: str | torch.device = "cpu",
                        au_source: AUSource = "landmarks", **hub_kwargs: object) -> DefGANPipeline:
        """Load a DefGAN repo (Hub repo id or local folder): its generators and, when it has them, its
        discriminator and its motion model.

        Extra keyword arguments (``revision``, ``cache_dir``, ``token``, ``local_files_only``…) go to
        ``from_pretrained`` of each network.
        """
        model = DefGAN.from_pretrained(pretrained_model_name_or_path, map_location=device, **hub_kwargs)
        try:
            discriminator = Discriminator.from_pretrained(pretrained_model_name_or_path, subfolder=DISCRIMINATOR_FOLDER,
                                                          map_location=device, **hub_kwargs)
        except FileNotFoundError:
            discriminator = None
        try:
            motion_model = MotionModel.from_pretrained(pretrained_model_name_or_path, subfolder=MOTION_FOLDER,
                                                       map_location=device, **hub_kwargs)  # fmt: skip
        except FileNotFoundError:
            motion_model = None
        return cls(model, discriminator, au_source, motion_model)

    def to(self, device: str | torch.device) -> DefGANPipeline:
        """Move the networks to ``device``."""
        self.model.to(device)
        for network in (self.discriminator, self.motion_model):
            if network is not None:
                network.to(device)
        return self

    def estimate_source_aus(self, crop: torch.Tensor, aligned: AlignedFace) -> torch.Tensor:
        """The expression of the face: ``(17,)`` in ``[0, 1]``, by :attr:`au_source`."""
        if self.au_source == "discriminator":
            with torch.no_grad():
                return self.discriminator(crop.to(self.device)).aus[0].clamp(0, 1).cpu()
        return torch.from_numpy(estimate_aus(aligned.face))

    def detect(self, image: PhotoInput, face_index: int | None = None) -> DetectedFace:
        """Find, align and read the expression of one face of a photo: the part of an edit that does not
        depend on the target, so that editing the same face again (e.g. from sliders) skips it.

        Args:
            image: a PIL image, a path or an RGB(A) array.
            face_index: None or 0 for the largest face, 1 for the second largest, …

        Raises:
            defgan_hf.face.NoFaceError: if the photo has no face (or fewer than ``face_index + 1``).
        """
        photo = load_image(image)
        aligned = align_face(photo, detect_face(photo, index=face_index or 0), size=self.image_size)
        return DetectedFace(photo, aligned, self.estimate_source_aus(image_to_tensor(aligned.image), aligned))

    @torch.no_grad()
    def edit_face(self, face: DetectedFace, target_aus: torch.Tensor | None = None, expression: str | None = None,
                  intensity: float = 1.0, aus: Mapping[str, float] | None = None, relative: bool = False,
                  motion_model_only: bool = False) -> DefGANPipelineOutput:
        """Edit a detected face.

        Args:
            face: from :meth:`detect`.
            target_aus: ``(17,)`` in ``[0, 1]``; if None, built by :meth:`target_aus` from ``expression``,
                ``intensity``, ``aus`` and ``relative``.
            motion_model_only: edit by the motion model's grid alone (no network, no new texture: the
                mask is 0); needs a model folder with a motion model.

        Raises:
            ValueError: on a bad target, or ``motion_model_only`` without a motion model.
        """
        if target_aus is None:
            target_vector = edit_target(face.source_aus, expression, intensity, aus, relative)
        else:
            target_vector = target_aus.float().cpu()
        if target_vector.shape != (NUM_AUS,):
            raise ValueError(f"target_aus must have shape ({NUM_AUS},), got {tuple(target_vector.shape)}.")
        photo, aligned, source = face.photo, face.aligned, face.source_aus
        device = self.device
        crop = image_to_tensor(aligned.image).to(device)
        if motion_model_only:
            edit = self.motion_model_edit(crop, face, target_vector)
        else:
            edit = self.model(crop, source[None].to(device), target_vector[None].to(device),
                              face.landmarks[None].to(device))
        edited_crop = tensor_to_image(edit.image)
        return DefGANPipelineOutput(
            image=paste_edit(photo, aligned, grid_offsets_px(edit.grid)[0].cpu().numpy(),
                             ((edit.color[0].permute(1, 2, 0).cpu() + 1.0) * 127.5).numpy(),
                             edit.mask[0, 0].cpu().numpy()),
            crop=aligned.image,
            deformed=tensor_to_image(edit.deformed),
            edited_crop=edited_crop,
            mask=tensor_to_image(mask_to_image(edit.mask)),
            deformation=tensor_to_image(deformation_lines(crop, edit.grid)),
            difference=tensor_to_image(difference_heatmap(crop, edit.image)),
            source_aus=source,
            target_aus=target_vector,
            grid=edit.grid.cpu(),
            aligned=aligned,
        )

    def _require_motion_model(self) -> None:
        if self.motion_model is None:
            raise ValueError("This model folder has no motion model (motion/): fit one into it with "
                             "`defgan-fit-motion DATA_DIR --out MODEL_FOLDER`.")  # fmt: skip

    def motion_model_edit(self, crop: torch.Tensor, face: DetectedFace, target_aus: torch.Tensor) -> DefGANOutput:
        """The edit by motion alone: ``crop`` warped by the motion model's grid, no texture (``M = 0``).

        Args:
            crop: ``(1, 3, S, S)`` in ``[-1, 1]``, the aligned crop of ``face``.
            target_aus: ``(17,)`` in ``[0, 1]``.
        """
        self._require_motion_model()
        grid = self.motion_model.grid(face.landmarks[None].to(crop.device), face.source_aus[None].to(crop.device),
                                      target_aus[None].to(crop.device)).to(crop.dtype)  # fmt: skip
        deformed = warp(crop, grid)
        return DefGANOutput(image=deformed, deformed=deformed, grid=grid, color=deformed,
                            mask=torch.zeros_like(crop[:, :1]))  # fmt: skip

    def __call__(self, image: PhotoInput | Sequence[PhotoInput], expression: str | None = None,
                 intensity: float = 1.0, aus: Mapping[str, float] | None = None, relative: bool = False,
                 face_index: int | None = None,
                 motion_model_only: bool = False) -> DefGANPipelineOutput | list[DefGANPipelineOutput]:
        """Edit the expression of a face in one photo or in each photo of a list.

        Args:
            image: a PIL image, a path, an RGB(A) array, or a list of them.
            expression: preset name (``"happy"``, ``"sad"``, … see :data:`~defgan_hf.EXPRESSIONS`).
            intensity: ``α`` in ``[0, 1]``: how far from the source expression toward the preset.
            aus: named AUs, e.g. ``{"AU12": 0.9, "AU06": 0.6}``: set (or, with ``relative``, added).
            relative: add ``aus`` to the source AUs instead of setting them.
            face_index: which face: None or 0 is the largest, 1 the second largest, …
            motion_model_only: edit by the motion model alone (:meth:`motion_model_edit`).

        Returns:
            A :class:`DefGANPipelineOutput` (a list of them for a list of photos).

        Raises:
            defgan_hf.face.NoFaceError: if a photo has no face (or fewer than ``face_index + 1``).
            ValueError: on unknown expression or AU names and values out of range.
        """
        if isinstance(image, Sequence) and not isinstance(image, str):
            return [self(one, expression, intensity, aus, relative, face_index, motion_model_only) for one in image]
        edit_target(torch.zeros(NUM_AUS), expression, intensity, aus, relative)  # bad arguments fail before detection
        if motion_model_only:
            self._require_motion_model()
        return self.edit_face(self.detect(image, face_index), expression=expression, intensity=intensity, aus=aus,
                              relative=relative, motion_model_only=motion_model_only)
