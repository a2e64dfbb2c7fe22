"""Face identity: the SFace recognition network in pure torch, and an identity distance between photos.

SFace (Zhong et al., "SFace: Sigmoid-Constrained Hypersphere Loss for Robust Face Recognition", 2021;
the OpenCV model zoo's ``face_recognition_sface_2021dec.onnx``) is a MobileNet trunk (a 3×3 conv and
13 depthwise-separable blocks, BatchNorm + PReLU, 112 → 7 pixels) with a linear 128-D embedding. The
weights are read from the ONNX file's initialisers, so no ONNX runtime is needed; the torch network
computes what OpenCV's ``cv2.FaceRecognizerSF.feature`` computes, and is differentiable in its input.
It is the identity network ``E`` of DefGAN's identity loss (``--identity_model sface``) and the
identity metric.

Input convention: RGB in ``[-1, 1]``, aligned to the 5-point template (:data:`defgan_hf.face.FACE_TEMPLATE`).
:meth:`SFace.embed_aligned` takes the tight 112×112 crop (``align_face(..., size=112, margin=0)``);
calling the module takes DefGAN's own face crops (any size, margin :data:`~defgan_hf.face.FACE_CROP_MARGIN`)
and resamples their central part to that tight crop. The ONNX graph takes RGB bytes ``v`` in
``[0, 255]`` and computes ``(v − 127.5) / 128``; for ``x = v / 127.5 − 1`` that is ``x · 127.5 / 128``.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from .assets import fetch
from .face import FACE_CROP_MARGIN, align_face, detect_face
from .images import image_to_tensor, load_image
from .losses import embedding_distance

SFACE_SIZE: int = 112
"""Side of SFace's input crop."""

EMBEDDING_DIM: int = 128

# (output channels, stride) of the depthwise-separable blocks conv_2 … conv_14, after the 3×3 conv_1 → 32.
_BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
           (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))  # fmt: skip
_CONV_BN_EPS = 1e-3  # the ONNX file's BatchNorm epsilons
_HEAD_BN_EPS = 2e-5
_INPUT_MEAN, _INPUT_SCALE = 127.5, 1.0 / 128.0  # the graph's own input normalisation, checked on load


class ConvBNPReLU(nn.Sequential):
    """Conv (no bias) → BatchNorm → PReLU (one slope per channel), 'same' padding."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1):
        super().__init__(OrderedDict(
            conv=nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups, bias=False),
            bn=nn.BatchNorm2d(out_channels, eps=_CONV_BN_EPS),
            prelu=nn.PReLU(out_channels),
        ))  # fmt: skip


class SFace(nn.Module):
    """SFace face-recognition network: aligned face → 128-D identity embedding (see the module docstring).

    The network is frozen: it always runs in eval mode (BatchNorm with its stored statistics), and
    :meth:`from_onnx` turns off gradients for its weights; gradients still flow to its input.

    Args:
        crop_margin: margin of the face crops passed to :meth:`forward` (DefGAN's by default).
    """

    def __init__(self, crop_margin: float = FACE_CROP_MARGIN) -> None:
        super().__init__()
        self.crop_margin = crop_margin
        # Layer names follow the ONNX file's, so that loading is a renaming.
        layers: OrderedDict[str, nn.Module] = OrderedDict(conv_1=ConvBNPReLU(3, 32, 3))
        channels = 32
        for number, (out_channels, stride) in enumerate(_BLOCKS, start=2):
            layers[f"conv_{number}_dw"] = ConvBNPReLU(channels, channels, 3, stride, groups=channels)
            layers[f"conv_{number}"] = ConvBNPReLU(channels, out_channels, 1)
            channels = out_channels
        self.trunk = nn.Sequential(layers)
        self.bn1 = nn.BatchNorm2d(channels, eps=_HEAD_BN_EPS)
        # The graph's Dropout is the identity at inference, the only way this network is run.
        feature_side = SFACE_SIZE // 16
        self.pre_fc1 = nn.Linear(channels * feature_side * feature_side, EMBEDDING_DIM)
        self.fc1 = nn.BatchNorm1d(EMBEDDING_DIM, eps=_HEAD_BN_EPS)
        self.eval()

    def train(self, mode: bool = True) -> SFace:
        """Stay in eval mode whatever is asked: the network is a fixed measuring instrument."""
        return super().train(False)

    def embed_aligned(self, faces: torch.Tensor) -> torch.Tensor:
        """Embed tight SFace crops.

        Args:
            faces: ``(N, 3, 112, 112)`` RGB in ``[-1, 1]``, from ``align_face(photo, face, 112, margin=0)``.

        Returns:
            ``(N, 128)`` embeddings, not normalised (as ``cv2.FaceRecognizerSF.feature`` returns them);
            compare them by cosine similarity.
        """
        if faces.dim() != 4 or tuple(faces.shape[1:]) != (3, SFACE_SIZE, SFACE_SIZE):
            raise ValueError(f"SFace takes (N, 3, {SFACE_SIZE}, {SFACE_SIZE}) crops, got {tuple(faces.shape)}.")
        features = self.bn1(self.trunk(faces * (127.5 * _INPUT_SCALE)))
        return self.fc1(self.pre_fc1(features.flatten(1)))

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        """Embed DefGAN face crops, ``(N, 3, S, S)`` RGB in ``[-1, 1]`` with margin ``crop_margin`` → ``(N, 128)``."""
        if crops.dim() != 4 or crops.shape[1] != 3 or crops.shape[2] != crops.shape[3]:
            raise ValueError(f"Expected square RGB crops (N, 3, S, S), got {tuple(crops.shape)}.")
        # The tight crop is the central 1 / (1 + 2m) of the crop (see defgan_hf.face.crop_template).
        zoom = 1.0 / (1.0 + 2.0 * self.crop_margin)
        theta = crops.new_tensor([[zoom, 0.0, 0.0], [0.0, zoom, 0.0]]).expand(len(crops), 2, 3)
        grid = F.affine_grid(theta, [len(crops), 3, SFACE_SIZE, SFACE_SIZE], align_corners=False)
        tight = F.grid_sample(crops, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return self.embed_aligned(tight)

    @classmethod
    def from_onnx(cls, path: str | Path | None = None, crop_margin: float = FACE_CROP_MARGIN) -> SFace:
        """Build SFace with the weights of the ONNX file (default: the ``sface`` asset, fetched and verified).

        Raises:
            ValueError: if the file's tensors do not match this architecture one to one.
        """
        import onnx
        from onnx import numpy_helper

        graph = onnx.load(str(path if path is not None else fetch("sface"))).graph
        tensors = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
        mean, scale = tensors.pop("scalar_op1", None), tensors.pop("scalar_op2", None)
        if mean is None or scale is None or not np.allclose([mean.item(), scale.item()], [_INPUT_MEAN, _INPUT_SCALE]):
            raise ValueError(
                f"Expected an SFace graph normalising its input as (v − 127.5) / 128, got {mean}, {scale}."
            )
        model = cls(crop_margin)
        state = model.state_dict()
        loaded = {}
        for name, array in tensors.items():
            key = _torch_name(name)
            if key not in state or state[key].numel() != array.size:
                raise ValueError(f"ONNX tensor {name} {array.shape} has no counterpart in SFace ({key}).")
            loaded[key] = torch.from_numpy(array.copy()).reshape(state[key].shape)
        missing = [key for key in state if key not in loaded and not key.endswith("num_batches_tracked")]
        if missing:
            raise ValueError(f"The ONNX file lacks SFace weights for {', '.join(missing)}.")
        model.load_state_dict(loaded, strict=False)
        return model.requires_grad_(False)


def _torch_name(onnx_name: str) -> str:
    """ONNX initialiser name → state-dict key, e.g. ``conv_2_dw_batchnorm_gamma`` → ``trunk.conv_2_dw.bn.weight``."""
    parameter = {"weight": "weight", "bias": "bias", "gamma": "weight", "beta": "bias",
                 "moving_mean": "running_mean", "moving_var": "running_var"}  # fmt: skip
    for suffix, role in (("_conv2d_", "conv"), ("_batchnorm_", "bn"), ("_relu_", "prelu")):
        if onnx_name.startswith("conv_") and suffix in onnx_name:
            layer, kind = onnx_name.split(suffix)
            kind = "weight" if role == "prelu" else parameter[kind]
            return f"trunk.{layer}.{role}.{kind}"
    layer, _, kind = onnx_name.partition("_")
    if layer == "pre":  # pre_fc1_weight / pre_fc1_bias
        return f"pre_fc1.{kind.removeprefix('fc1_')}"
    return f"{layer}.{parameter.get(kind, kind)}"


def load_identity_model(name: str = "sface") -> nn.Module:
    """The identity network for training's ``--identity_model``: takes DefGAN face crops, returns embeddings.

    Raises:
        ValueError: on an unknown name.
    """
    if name != "sface":
        raise ValueError(f"Unknown identity model {name!r}; the one available is 'sface'.")
    return SFace.from_onnx()


@functools.cache
def _default_sface() -> SFace:
    return SFace.from_onnx()


def identity_distance(
    a: str | Path | Image.Image | np.ndarray, b: str | Path | Image.Image | np.ndarray, model: SFace | None = None
) -> float:
    """``1 − cos`` between the SFace embeddings of the largest faces of two photos.

    Each photo's largest face is detected, aligned to SFace's 112×112 crop and embedded. The distance
    is in ``[0, 2]``: 0 for the same image, around 0.3–0.6 between photos of one person, near 1 between
    different people.

    Raises:
        defgan_hf.face.NoFaceError: if a photo has no face.
    """
    model = model if model is not None else _default_sface()
    crops = []
    for photo in (a, b):
        photo = load_image(photo)
        crops.append(image_to_tensor(align_face(photo, detect_face(photo), SFACE_SIZE, margin=0.0).image))
    with torch.no_grad():
        embeddings = model.embed_aligned(torch.cat(crops))
    return float(embedding_distance(embeddings[0], embeddings[1]))
