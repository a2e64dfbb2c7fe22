"""defgan-hf: DefGAN facial-expression editing (motion + texture), Hugging Face native."""

from .aus import (
    AU_FACS_NAMES,
    AU_NAMES,
    EXPRESSIONS,
    NUM_AUS,
    au_vector,
    canonical_au_name,
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

__all__ = [
    "AU_FACS_NAMES",
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
    "expression_vector",
    "interpolate_expression",
]
