"""The DefGAN networks: deformation generator, texture generator, discriminator, and their composition."""

from .defgan import DISCRIMINATOR_FOLDER, MOTION_FOLDER, DefGAN, DefGANOutput
from .deformer import DeformationGenerator
from .discriminator import Discriminator, DiscriminatorOutput
from .hub import WeightsMismatchError
from .texture import TextureGenerator, TextureOutput

__all__ = [
    "DISCRIMINATOR_FOLDER",
    "MOTION_FOLDER",
    "DefGAN",
    "DefGANOutput",
    "DeformationGenerator",
    "Discriminator",
    "DiscriminatorOutput",
    "TextureGenerator",
    "TextureOutput",
    "WeightsMismatchError",
]
