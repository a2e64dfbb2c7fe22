"""DefGAN: the deformation and texture generators composed, ``I_y = G_Comp(I_x, x, y)``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..face_regions import changed_region_mask
from ..warp import identity_grid, warp
from .deformer import FIELD_COMPOSITION, DeformationGenerator
from .discriminator import Discriminator
from .hub import HubModel, push_folder, resolve_folder
from .texture import TextureGenerator

DEFORMER_FOLDER = "deformer"
TEXTURER_FOLDER = "texturer"
DISCRIMINATOR_FOLDER = "discriminator"
MOTION_FOLDER = "motion"
"""Subfolder of the motion model (:class:`defgan_hf.motion.MotionModel`) that taught the deformation generator."""

if TYPE_CHECKING:
    from ..motion import MotionModel


@dataclass
class DefGANOutput:
    """Everything one edit produces; images ``(N, 3, S, S)`` in ``[-1, 1]``.

    Attributes:
        image: the final edit ``I_y = M·T + (1 − M)·I*_y``.
        deformed: the motion-only edit ``I*_y = Warp(G, I_x)``.
        grid: the deformation grid ``G``, ``(N, S, S, 2)`` in normalised coordinates.
        color: the texture map ``T``, ``(N, 3, S, S)`` in ``[-1, 1]``.
        mask: the attention mask ``M``, ``(N, 1, S, S)`` in ``[0, 1]``, 1 where ``T`` replaces ``I*_y``.
        au_fields: with a ``conditioning="change"`` deformation generator, its per-AU fields
            ``(N, 17, 2, S, S)`` in pixels per unit AU change (:meth:`DeformationGenerator.au_fields`); else None.
        region: with ``mask_regions``, the regions of the changed AUs the mask was confined to, ``(N, 1, S, S)``
            in ``[0, 1]`` (:func:`~defgan_hf.face_regions.changed_region_mask`); else None.
    """

    image: torch.Tensor
    deformed: torch.Tensor
    grid: torch.Tensor
    color: torch.Tensor
    mask: torch.Tensor
    au_fields: torch.Tensor | None = None
    region: torch.Tensor | None = None


def compose(color: torch.Tensor, mask: torch.Tensor, deformed: torch.Tensor) -> torch.Tensor:
    """The paper's composition (Eq. 6): ``I_y = M·T + (1 − M)·I*_y``; the mask selects the new texture.

    Args:
        color: ``(N, 3, S, S)`` the texture map ``T`` in ``[-1, 1]``.
        mask: ``(N, 1, S, S)`` the attention mask ``M`` in ``[0, 1]``.
        deformed: ``(N, 3, S, S)`` the motion-only edit ``I*_y`` in ``[-1, 1]``.
    """
    return mask * color + (1.0 - mask) * deformed


def with_au_modulation(model: DefGAN) -> DefGAN:
    """The same generators with AU-modulated normalisations added, for fine-tuning a paper-layout model.

    The modulation starts at zero (:class:`~defgan_hf.models.blocks.AUModulatedNorm`), so the returned
    model edits exactly as ``model`` does until it is trained. A model that has it is returned as is.

    Raises:
        ValueError: if the weights do not carry over (a bug, not a user error).
    """
    def modulated(network: nn.Module) -> nn.Module:
        return network if network.au_modulation else _rebuilt(network, au_modulation=True)

    # A change-conditioned deformation generator sees no AUs: nothing to modulate.
    deformer = model.deformer if model.deformer is None or model.deformer.conditioning == "change" \
        else modulated(model.deformer)  # fmt: skip
    return DefGAN(modulated(model.texturer), deformer, mask_regions=model.mask_regions)


def with_field_composition(model: DefGAN, **composition: bool | int | str) -> DefGAN:
    """The same networks, the deformation generator's per-AU fields composed into a grid otherwise: any of
    :class:`DeformationGenerator`'s ``inner_brow_combination`` (FACS's 1+4), ``arrival_steps`` (offsets moved to where
    the landmarks arrive) and ``bound``. No weight changes: a model trained with one composition is given another.

    Args:
        model: a DefGAN whose deformation generator has per-AU fields.
        **composition: the settings to change, by name.

    Raises:
        ValueError: for a texture-only model, an unknown setting, or a deformation generator that the setting does
            not fit (the generator's own error: per-AU fields, and landmarks for the 1+4 rule).
    """
    if model.deformer is None:
        raise ValueError("A texture-only model has no deformation generator whose fields to compose.")
    unknown = set(composition) - set(FIELD_COMPOSITION)
    if unknown:
        raise ValueError(f"Unknown field composition settings: {', '.join(sorted(unknown))}.")
    deformer = model.deformer
    if any(getattr(deformer, name) != value for name, value in composition.items()):
        deformer = _rebuilt(deformer, **composition)
    return DefGAN(model.texturer, deformer, mask_regions=model.mask_regions)


def _rebuilt(network: nn.Module, **config: Any) -> nn.Module:
    """``network`` built again with ``config`` changed, its weights carried over (AU modulations that ``config``
    adds start at zero).

    Raises:
        ValueError: if the weights do not carry over (a bug, not a user error).
    """
    rebuilt = type(network)(**{**network._hub_mixin_config, **config})
    missing, unexpected = rebuilt.load_state_dict(network.state_dict(), strict=False)
    if unexpected or any(".modulation." not in key for key in missing):
        raise ValueError(f"weights did not carry over: missing {missing}, unexpected {unexpected}")
    return rebuilt.to(next(network.parameters()).device).train(network.training)


class DefGAN(nn.Module, HubModel):
    """``G_Comp = G_Tex ∘ G_Def^W``: warp the face toward the target expression, then add texture.

    Without a deformer it is the texture-only ablation (GANimation): ``I*_y = I_x`` and ``G`` is the
    identity grid.

    With ``mask_regions`` (not in the paper) the attention mask is confined to the face regions of the AUs
    the edit changes (:func:`defgan_hf.face_regions.changed_region_mask`, from the face's landmarks): texture
    appears only where the changed AUs act, and an edit that changes no AU adds none.

    Args:
        texturer: the texture generator ``G_Tex``.
        deformer: the deformation generator ``G_Def``, or None for the texture-only model.
        mask_regions: confine the mask to the changed AUs' regions (the forward pass then needs landmarks).
    """

    def __init__(self, texturer: TextureGenerator, deformer: DeformationGenerator | None = None,
                 mask_regions: bool = False) -> None:
        super().__init__()
        if deformer is not None and deformer.image_size != texturer.image_size:
            raise ValueError(
                f"deformer works on {deformer.image_size}px crops but texturer on {texturer.image_size}px; they must match."
            )
        self.texturer = texturer
        self.deformer = deformer
        self.mask_regions = mask_regions
        # The root config.json describes the composition; each network's sizes live in its subfolder.
        self._hub_mixin_config = {"texture_only": deformer is None, "mask_regions": mask_regions}

    @property
    def texture_only(self) -> bool:
        """True for the GANimation ablation (no deformation generator)."""
        return self.deformer is None

    @property
    def image_size(self) -> int:
        """Side of the square face crops the generators take."""
        return self.texturer.image_size

    def forward(self, image: torch.Tensor, source_aus: torch.Tensor, target_aus: torch.Tensor,
                landmarks: torch.Tensor | None = None, grid: torch.Tensor | None = None) -> DefGANOutput:  # fmt: skip
        """
        Args:
            image: ``(N, 3, S, S)`` in ``[-1, 1]``, the face ``I_x``.
            source_aus: ``(N, 17)`` in ``[0, 1]``, its expression ``x``.
            target_aus: ``(N, 17)`` in ``[0, 1]``, the wanted expression ``y``.
            landmarks: ``(N, 478, 2)`` the face-mesh landmarks in crop pixels; needed with ``mask_regions``
                and by a deformation generator with ``landmark_input``.
            grid: ``(N, S, S, 2)`` a deformation grid to warp with instead of the deformation generator's, or
                None. Texture pretraining passes the motion between two video frames, so that the texture
                generator learns what that motion leaves to it; the per-AU fields are still computed.

        Raises:
            ValueError: if the model confines its mask to regions, or its deformation generator reads landmarks,
                and ``landmarks`` is None.
        """
        au_fields = None
        if self.deformer is None:
            if grid is not None:
                raise ValueError("The texture-only model does not warp: pass no grid.")
            batch_size, _, height, width = image.shape
            grid = identity_grid(batch_size, height, width, image.device, image.dtype)
            deformed = image
        else:
            if self.deformer.conditioning == "change":
                au_fields = self.deformer.au_fields(image, landmarks)
                if grid is None:
                    grid = self.deformer.fields_grid(au_fields, source_aus, target_aus, landmarks)
            elif grid is None:
                grid = self.deformer(image, source_aus, target_aus, landmarks)
            deformed = warp(image, grid)
        color, mask = self.texturer(deformed, target_aus, source_aus)
        region = None
        if self.mask_regions:
            if landmarks is None:
                raise ValueError("This model confines texture to the regions of the changed AUs: pass the face's "
                                 "landmarks in crop pixels (DetectedFace.landmarks, or landmarks.csv in training).")
            region = changed_region_mask(landmarks.to(mask.dtype), source_aus, target_aus, self.image_size)
            mask = mask * region
        return DefGANOutput(image=compose(color, mask, deformed), deformed=deformed, grid=grid, color=color,
                            mask=mask, au_fields=au_fields, region=region)  # fmt: skip

    def save_pretrained(  # type: ignore[override]
        self,
        save_directory: str | Path,
        *,
        discriminator: Discriminator | None = None,
        motion_model: MotionModel | None = None,
        config: dict[str, Any] | None = None,
        push_to_hub: bool = False,
        repo_id: str | None = None,
        model_card_kwargs: dict[str, Any] | None = None,
        **push_to_hub_kwargs: Any,
    ) -> str | None:
        """Write the repo layout (generators, root config, model card) and, if given, the discriminator and
        the motion model.

        With ``push_to_hub`` the whole folder, discriminator and motion model included, is uploaded to ``repo_id``
        (default: the folder's name); extra keyword arguments go to :func:`~defgan_hf.models.hub.push_folder`.

        Returns:
            The commit URL when pushed, else None.
        """
        save_directory = Path(save_directory)
        super().save_pretrained(save_directory, config=config, model_card_kwargs=model_card_kwargs)
        if discriminator is not None:
            discriminator.save_pretrained(save_directory, subfolder=DISCRIMINATOR_FOLDER)
        if motion_model is not None:
            motion_model.save_pretrained(save_directory, subfolder=MOTION_FOLDER)
        if not push_to_hub:
            return None
        return push_folder(save_directory, repo_id or save_directory.name, **push_to_hub_kwargs)

    def _save_pretrained(self, save_directory: Path) -> None:
        self.texturer.save_pretrained(save_directory, subfolder=TEXTURER_FOLDER)
        if self.deformer is not None:
            self.deformer.save_pretrained(save_directory, subfolder=DEFORMER_FOLDER)

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None,
        cache_dir: str | Path | None,
        force_download: bool,
        local_files_only: bool,
        token: str | bool | None,
        config: dict[str, Any] | None = None,
        map_location: str | torch.device = "cpu",
        strict: bool = True,
        mask_regions: bool = False,
    ) -> DefGAN:
        if config is None or "texture_only" not in config:
            raise FileNotFoundError(
                f"{model_id} has no DefGAN config.json at its root (expected {{\"texture_only\": ...}}); "
                "save DefGAN models with DefGAN.save_pretrained."
            )
        folders = [TEXTURER_FOLDER] if config["texture_only"] else [TEXTURER_FOLDER, DEFORMER_FOLDER]
        folder = resolve_folder(model_id, allow_patterns=[f"{name}/*" for name in folders], revision=revision,
                                cache_dir=cache_dir, force_download=force_download, token=token,
                                local_files_only=local_files_only)
        loaded = {name: resolve_folder(folder, name) for name in folders}
        texturer = TextureGenerator.from_pretrained(loaded[TEXTURER_FOLDER], map_location=map_location, strict=strict)
        deformer = None
        if not config["texture_only"]:
            deformer = DeformationGenerator.from_pretrained(loaded[DEFORMER_FOLDER], map_location=map_location,
                                                            strict=strict)
        return cls(texturer, deformer, mask_regions=mask_regions).eval()

    def usage_example(self) -> str:
        s = self.image_size
        return (
            "import torch\nfrom defgan_hf import DefGAN, Discriminator, interpolate_expression\n\n"
            'model = DefGAN.from_pretrained("REPO_ID_OR_FOLDER")\n'
            'discriminator = Discriminator.from_pretrained("REPO_ID_OR_FOLDER", subfolder="discriminator")\n'
            f"face = torch.rand(1, 3, {s}, {s}) * 2 - 1  # an aligned face crop in [-1, 1]\n"
            "source_aus = discriminator(face).aus.clamp(0, 1)  # or AUs from a face annotator\n"
            'target_aus = interpolate_expression(source_aus, "happy", intensity=0.8)\n'
            "edit = model(face, source_aus, target_aus)  # edit.image, edit.deformed, edit.mask, edit.grid"
        )
