"""defgan-hf: DefGAN facial-expression editing (motion + texture), Hugging Face native."""

from .aus import (
    AU_FACS_NAMES,
    AU_NAMES,
    EXPRESSIONS,
    NUM_AUS,
    au_vector,
    canonical_au_name,
    edit_target,
    expression_vector,
    interpolate_expression,
)
from .models import (
    DISCRIMINATOR_FOLDER,
    DefGAN,
    DefGANOutput,
    DeformationGenerator,
    Discriminator,
    DiscriminatorOutput,
    TextureGenerator,
    TextureOutput,
    WeightsMismatchError,
)

__version__ = "0.1.0"

# The pipeline brings the face toolkit (MediaPipe, OpenCV): imported on first use, so that training
# code and its data workers, which never need it, start without it.
_LAZY = {name: "pipeline" for name in ("DefGANPipeline", "DefGANPipelineOutput", "DetectedFace", "DEFAULT_MODEL")}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AU_FACS_NAMES",
    "DEFAULT_MODEL",
    "DefGANPipeline",
    "DefGANPipelineOutput",
    "DetectedFace",
    "AU_NAMES",
    "DISCRIMINATOR_FOLDER",
    "EXPRESSIONS",
    "NUM_AUS",
    "DefGAN",
    "DefGANOutput",
    "DeformationGenerator",
    "Discriminator",
    "DiscriminatorOutput",
    "TextureGenerator",
    "TextureOutput",
    "WeightsMismatchError",
    "au_vector",
    "canonical_au_name",
    "edit_target",
    "expression_vector",
    "interpolate_expression",
]
