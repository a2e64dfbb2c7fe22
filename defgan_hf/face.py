"""Faces in photos: detection with landmarks, the aligned crop the networks see, and paste-back.

Detection uses MediaPipe's Face Landmarker (Tasks API, model from :mod:`defgan_hf.assets`): a face
detector, a 478-point face mesh and 52 blendshape scores per face.

The aligned crop maps five landmarks (the eye centres, the nose tip, the mouth corners) by a
similarity transform (rotation, uniform scale, translation; least squares) onto the standard 5-point
template of face recognition (ArcFace / InsightFace, which SFace also uses), widened by a margin:
with ``margin = m`` the crop is the template's tight crop plus ``m`` of its width on every side.
``m = 0`` gives the tight crop face-recognition networks take; :data:`FACE_CROP_MARGIN` gives the
looser DefGAN crop that, like the aligned faces GANimation was trained on, shows the whole face from
the forehead to the chin with a little hair and background. :func:`paste_back` applies the inverse
transform and blends the crop into the photo through a feathered mask around the face, so that only
the face region of the photo changes.

Coordinates are pixels, ``(x, y)``, in the photo as :func:`defgan_hf.images.load_image` returns it (EXIF
orientation applied). Photos are PIL images; :mod:`defgan_hf.images` converts them to and from the networks'
convention, float ``(N, 3, H, W)`` RGB in ``[-1, 1]``.
"""

from __future__ import annotations

import atexit
import functools
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from . import face_regions
from .assets import fetch
from .images import load_image

FACE_CROP_MARGIN: float = 0.125
"""Margin of the DefGAN face crop, as a fraction of the tight face-recognition crop's width per side."""

FACE_TEMPLATE: np.ndarray = (
    np.array(
        [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
        dtype=np.float64,
    )
    / 112.0
)
"""``(5, 2)`` ArcFace template in the unit square: left eye, right eye, nose tip, left and right mouth
corners (left = image left), as face-recognition networks expect them in a 112×112 crop."""

# Face-mesh index of the template's nose tip; its eyes are the midpoints of the eye corners (unlike the irises,
# they do not move with the gaze), its mouth corners the lips' (face_regions.EYES, face_regions.LIP_CORNERS).
_NOSE_TIP = 1

DETECTION_MAX_SIDE: int = 1280
"""Photos (and tiles) are detected on a copy scaled down to at most this many pixels per side:
the detector sees 128×128 anyway, and the mesh is regressed on the face at up to 256×256."""

MAX_FACES: int = 10
"""At most this many faces per detection pass."""

# Tiled passes for faces too small for the whole-photo pass (the detector sees the photo at 128×128 and
# misses faces under about a tenth of it): an n × n grid of tiles, each 2 / (n + 1) of the photo,
# overlapping by half, so every face smaller than half a tile lies wholly inside one tile.
_TILE_GRIDS = (2, 4, 8)
_SAME_FACE_IOU = 0.3
# The mesh of a face that fills little of the detector's view is fitted loosely (errors of a sixth of
# the eye distance); such faces are detected again in a view they fill a third of.
_REFINE_BELOW = 0.25


class NoFaceError(ValueError):
    """No face (or not the requested one) was found in a photo."""


@dataclass(frozen=True)
class Face:
    """One detected face.

    Attributes:
        landmarks: ``(478, 3)`` float64 MediaPipe face mesh: ``x``, ``y`` in photo pixels, ``z`` the
            relative depth on the same scale as ``x`` (smaller is nearer the camera).
        blendshapes: MediaPipe's 52 blendshape scores in ``[0, 1]``, by name (``"mouthSmileLeft"``…).
        pose: ``(yaw, pitch, roll)`` of the head in degrees, from MediaPipe's facial transformation
            matrix (0 for a frontal, upright face), or None where it was not estimated.
    """

    landmarks: np.ndarray
    blendshapes: dict[str, float]
    pose: tuple[float, float, float] | None = None

    @property
    def box(self) -> tuple[float, float, float, float]:
        """``(left, top, right, bottom)`` of the mesh in photo pixels."""
        left, top = self.landmarks[:, :2].min(axis=0)
        right, bottom = self.landmarks[:, :2].max(axis=0)
        return float(left), float(top), float(right), float(bottom)

    @property
    def size(self) -> float:
        """Geometric mean of the mesh's width and height, in photo pixels."""
        left, top, right, bottom = self.box
        return float(np.sqrt((right - left) * (bottom - top)))

    @property
    def eye_distance(self) -> float:
        """Distance between the eye centres in 3D (so that it shrinks little when the head turns), in pixels."""
        return face_regions.eye_distance(self.landmarks)

    @property
    def keypoints(self) -> np.ndarray:
        """``(5, 2)`` photo pixels of the points of :data:`FACE_TEMPLATE`, in its order."""
        xy = self.landmarks[:, :2]
        eyes = [xy[list(eye["corners"])].mean(axis=0) for eye in face_regions.EYES]
        left, right = face_regions.LIP_CORNERS
        return np.stack([*eyes, xy[_NOSE_TIP], xy[left], xy[right]])


@dataclass(frozen=True)
class AlignedFace:
    """An aligned face crop and what is needed to paste an edit of it back.

    Attributes:
        image: the ``size × size`` RGB crop.
        matrix: ``(2, 3)`` similarity transform from photo pixels to crop pixels.
        face: the detection the crop was made from (photo coordinates).
        photo_size: ``(width, height)`` of the photo.
    """

    image: Image.Image
    matrix: np.ndarray
    face: Face
    photo_size: tuple[int, int]

    @property
    def scale(self) -> float:
        """Crop pixels per photo pixel: below 1 the crop has less detail than the photo."""
        return float(np.sqrt(abs(np.linalg.det(self.matrix[:, :2]))))

    @property
    def crop_landmarks(self) -> np.ndarray:
        """``(478, 2)`` float64 face-mesh landmarks ``(x, y)`` in pixels of the crop."""
        return self.face.landmarks[:, :2] @ self.matrix[:, :2].T + self.matrix[:, 2]


# ---------------------------------------------------------------------------------------------------
# Detection


@functools.cache
def _landmarker() -> tuple[object, threading.Lock]:
    """One Face Landmarker per process, with a lock: a MediaPipe task runs one image at a time."""
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions

    options = vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(fetch("face_landmarker"))),
        running_mode=vision.RunningMode.IMAGE,
        num_faces=MAX_FACES,
        output_face_blendshapes=True,
        output_facial_transformation_matrixes=True,
    )
    return vision.FaceLandmarker.create_from_options(options), threading.Lock()


def _close_landmarker() -> None:
    if _landmarker.cache_info().currsize:
        _landmarker()[0].close()


# MediaPipe's exit handler stops its tasks; a landmarker still open when the interpreter tears modules
# down then fails noisily in its finaliser. Exit handlers run last-registered first, so this one,
# registered before MediaPipe is imported, closes the landmarker after MediaPipe has stopped.
atexit.register(_close_landmarker)


def _detect_in(image: Image.Image, offset: tuple[int, int] = (0, 0)) -> list[Face]:
    """One pass over ``image`` (scaled down to :data:`DETECTION_MAX_SIDE`); landmarks shifted by ``offset``."""
    import mediapipe as mp

    scale = min(1.0, DETECTION_MAX_SIDE / max(image.size))
    pixels, (width, height) = np.asarray(image), image.size
    if scale < 1.0:
        # Area averaging: an antialiased reduction, several times faster than Lanczos on a 12-megapixel photo.
        width, height = max(1, round(width * scale)), max(1, round(height * scale))
        pixels = cv2.resize(pixels, (width, height), interpolation=cv2.INTER_AREA)
    landmarker, lock = _landmarker()
    frame = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(pixels))
    with lock:
        result = landmarker.detect(frame)
    faces = []
    for mesh, shapes, transformation in zip(result.face_landmarks, result.face_blendshapes,
                                            result.facial_transformation_matrixes):
        normalised = np.array([(point.x, point.y, point.z) for point in mesh], dtype=np.float64)
        # MediaPipe normalises x by the width, y by the height and z roughly like x; its pixel centres
        # are at integer coordinates, which scaling keeps in place: x → (x + 0.5) / scale − 0.5.
        landmarks = normalised * (width, height, width) / scale
        landmarks[:, :2] += np.array(offset) + 0.5 / scale - 0.5
        faces.append(Face(landmarks=landmarks, blendshapes={s.category_name: float(s.score) for s in shapes},
                          pose=head_pose(np.asarray(transformation))))
    return faces


def head_pose(transformation: np.ndarray) -> tuple[float, float, float]:
    """``(yaw, pitch, roll)`` in degrees of MediaPipe's ``(4, 4)`` facial transformation matrix.

    The matrix maps MediaPipe's canonical face model (x to the face's left as seen in the image, y up,
    z toward the camera) into camera space; its rotation is decomposed as ``R = R_z(roll) R_y(yaw) R_x(pitch)``.
    Yaw is positive when the face turns toward the image's right, pitch when it looks down.
    """
    rotation = transformation[:3, :3] / np.linalg.norm(transformation[:3, :3], axis=0)
    yaw = np.degrees(np.arcsin(-np.clip(rotation[2, 0], -1.0, 1.0)))
    pitch = np.degrees(np.arctan2(rotation[2, 1], rotation[2, 2]))
    roll = np.degrees(np.arctan2(rotation[1, 0], rotation[0, 0]))
    return float(yaw), float(pitch), float(roll)


def _iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    intersection = width * height
    return intersection / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - intersection)


def _detect_in_tiles(photo: Image.Image, grid: int) -> list[Face]:
    width, height = photo.size
    tile_width, tile_height = round(2 * width / (grid + 1)), round(2 * height / (grid + 1))
    faces = []
    for row in range(grid):
        for column in range(grid):
            left = round(column * (width - tile_width) / (grid - 1))
            top = round(row * (height - tile_height) / (grid - 1))
            right, bottom = left + tile_width, top + tile_height
            tile = photo.crop((left, top, right, bottom))
            for face in _detect_in(tile, offset=(left, top)):
                # A face cut by an inner tile edge is found whole in the neighbouring tile.
                x0, y0, x1, y1 = face.box
                margin = 0.01 * tile_width
                cut = ((left > 0 and x0 < left + margin) or (top > 0 and y0 < top + margin)
                       or (right < width and x1 > right - margin)
                       or (bottom < height and y1 > bottom - margin))  # fmt: skip
                if not cut:
                    faces.append(face)
    return faces


def _refined(photo: Image.Image, face: Face) -> Face:
    """``face`` detected again in a square view three times its size, if it is small in ``photo``."""
    if face.size >= _REFINE_BELOW * min(photo.size):
        return face
    left, top, right, bottom = face.box
    centre_x, centre_y, half = (left + right) / 2, (top + bottom) / 2, 1.5 * face.size
    view = (max(0, round(centre_x - half)), max(0, round(centre_y - half)),
            min(photo.width, round(centre_x + half)), min(photo.height, round(centre_y + half)))  # fmt: skip
    candidates = _detect_in(photo.crop(view), offset=view[:2])
    best = max(candidates, key=lambda candidate: _iou(candidate.box, face.box), default=None)
    return best if best is not None and _iou(best.box, face.box) >= _SAME_FACE_IOU else face


def _search(photo: Image.Image, largest_only: bool) -> list[Face]:
    """Whole-photo pass, then tiled passes (see :func:`detect_faces`); faces refined, largest first."""
    faces = _detect_in(photo)
    for grid in _TILE_GRIDS:
        # The coarsest grid looks for more faces; finer (costlier) grids only for a first one.
        if faces and (largest_only or grid != _TILE_GRIDS[0]):
            break
        for face in _detect_in_tiles(photo, grid):
            if all(_iou(face.box, known.box) < _SAME_FACE_IOU for known in faces):
                faces.append(face)
    return sorted((_refined(photo, face) for face in faces), key=lambda face: face.size, reverse=True)


def detect_faces(photo: str | Path | Image.Image | np.ndarray) -> list[Face]:
    """All faces in a photo, largest first.

    One pass over the whole photo, one over a 2 × 2 grid of overlapping tiles for smaller faces and,
    while no face has been found, over finer grids (faces down to about 1/40 of the photo's width).
    Large photos (and tiles) are detected on scaled-down copies, and small faces again in a view
    around them, so that the mesh fits; landmarks are always in the pixels of the full photo.

    Args:
        photo: anything :func:`load_image` takes.

    Returns:
        The faces (possibly none), sorted by :attr:`Face.size`, largest first.
    """
    return _search(load_image(photo), largest_only=False)


def detect_face(photo: str | Path | Image.Image | np.ndarray, index: int = 0) -> Face:
    """One face of a photo: the largest by default, else the ``index``-th largest.

    For the largest face, the tiled passes run only when the whole-photo pass finds no face (a face it
    misses is smaller than one it finds); other indices search as :func:`detect_faces` does.

    Raises:
        ValueError: if ``index`` is negative.
        NoFaceError: if the photo has no face, or fewer than ``index + 1``.
    """
    if index < 0:
        raise ValueError(f"index must be 0 (the largest face) or more, got {index}.")
    photo = load_image(photo)
    faces = _search(photo, largest_only=index == 0)
    if index < len(faces):
        return faces[index]
    if faces:
        raise NoFaceError(
            f"Found only {len(faces)} face{'s' if len(faces) > 1 else ''} in the {photo.width}×{photo.height} photo, "
            f"so there is no face "
            f"number {index} (0 is the largest, {len(faces) - 1} the smallest)."
        )
    raise NoFaceError(
        f"Found no face in the {photo.width}×{photo.height} photo. Use a photo with a visible face, frontal or "
        "turned by less than about 60°, at least about 30 pixels wide."
    )


# ---------------------------------------------------------------------------------------------------
# Alignment and paste-back


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (Umeyama 1991, no reflection) mapping ``source`` onto ``target``.

    Args:
        source, target: ``(K, 2)`` corresponding points, ``K ≥ 2``.

    Returns:
        ``(2, 3)`` float64 matrix ``[s·R | t]`` with ``target ≈ s·R @ source + t``.
    """
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    source_centred, target_centred = source - source_mean, target - target_mean
    u, singular_values, vt = np.linalg.svd(target_centred.T @ source_centred / len(source))
    signs = np.array([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rotation = u @ np.diag(signs) @ vt
    scale = (singular_values * signs).sum() / source_centred.var(axis=0).sum()
    return np.hstack([scale * rotation, (target_mean - scale * rotation @ source_mean)[:, None]])


def crop_template(size: int, margin: float = FACE_CROP_MARGIN) -> np.ndarray:
    """``(5, 2)`` pixel positions of the :data:`FACE_TEMPLATE` points in a ``size × size`` crop with ``margin``."""
    return (FACE_TEMPLATE + margin) / (1.0 + 2.0 * margin) * size


def align_face(
    photo: str | Path | Image.Image | np.ndarray, face: Face, size: int = 128, margin: float = FACE_CROP_MARGIN
) -> AlignedFace:
    """Cut the aligned ``size × size`` crop of ``face`` out of ``photo``.

    Where the crop would be smaller than the face in the photo, the region is first scaled down with
    an antialiasing filter, so that the crop does not alias; parts of the crop beyond the photo's
    edge repeat the photo's edge pixels (a reflection could show a mirrored face).

    Args:
        photo: the photo ``face`` was detected in (anything :func:`load_image` takes).
        face: from :func:`detect_face` / :func:`detect_faces`.
        size: crop side in pixels (the networks' resolution, 128 for DefGAN, 112 for SFace).
        margin: see the module docstring; :data:`FACE_CROP_MARGIN` for DefGAN, 0 for SFace.
    """
    photo = load_image(photo)
    matrix = similarity_transform(face.keypoints, crop_template(size, margin))
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    source, to_source = photo, np.eye(3)
    if scale < 1.0:
        # Resize only the part of the photo the crop covers (plus a border for the filter), by the
        # crop's scale; the remaining warp is then a rotation and a shift.
        left, top, right, bottom = _footprint(matrix, (size, size), photo.size, border=4 / scale)
        region = photo.crop((left, top, right, bottom))
        shrunk = (max(1, round(region.width * scale)), max(1, round(region.height * scale)))
        source = region.resize(shrunk, Image.LANCZOS)
        factors = np.array(shrunk) / region.size
        # Pixel centres are at integer coordinates (OpenCV's convention); resizing keeps pixel centres
        # in place, x → (x + 0.5)·f − 0.5.
        to_source = np.diag([*factors, 1.0])
        to_source[:2, 2] = 0.5 * factors - 0.5 - factors * (left, top)
    # crop = matrix · photo = matrix · to_source⁻¹ · source
    source_to_crop = np.vstack([matrix, (0, 0, 1)]) @ np.linalg.inv(to_source)
    crop = cv2.warpAffine(np.asarray(source), source_to_crop[:2], (size, size), flags=cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
    return AlignedFace(image=Image.fromarray(crop), matrix=matrix, face=face, photo_size=photo.size)


def _footprint(matrix: np.ndarray, crop_size: tuple[int, int], photo_size: tuple[int, int],
               border: float = 2.0) -> tuple[int, int, int, int]:  # fmt: skip
    """Integer ``(left, top, right, bottom)`` of the photo pixels a crop covers, clipped to the photo."""
    inverse = cv2.invertAffineTransform(matrix)
    width, height = crop_size
    corners = np.array([[0, 0, 1], [width, 0, 1], [0, height, 1], [width, height, 1]], dtype=np.float64)
    points = corners @ inverse.T
    left, top = np.floor(points.min(axis=0) - border).astype(int)
    right, bottom = np.ceil(points.max(axis=0) + border).astype(int)
    return max(left, 0), max(top, 0), min(right, photo_size[0]), min(bottom, photo_size[1])


def _resized_crop_matrix(aligned: AlignedFace, size: int) -> np.ndarray:
    """Photo → crop transform for the crop resized to ``size × size`` (pixel centres kept in place)."""
    factor = size / aligned.image.width
    return np.hstack([aligned.matrix[:, :2] * factor, aligned.matrix[:, 2:] * factor + 0.5 * factor - 0.5])


def _crop_mask(aligned: AlignedFace, size: int) -> np.ndarray:
    """``(size, size)`` float32 weight of the crop in the blend: 1 on the face, feathered to 0 around it.

    The face is the convex hull of the mesh, widened by 10 % around its centre so that an edit may
    move the jaw line; the feather is a Gaussian of 3 % of the crop; the weight is 0 on the crop's
    border, so the crop's edge never shows.
    """
    to_crop = _resized_crop_matrix(aligned, size)
    points = aligned.face.landmarks[:, :2] @ to_crop[:, :2].T + to_crop[:, 2]
    hull = cv2.convexHull(points.astype(np.float32))[:, 0]
    hull = (hull - hull.mean(axis=0)) * 1.1 + hull.mean(axis=0)
    mask = np.zeros((size, size), dtype=np.float32)
    cv2.fillConvexPoly(mask, np.round(hull * 16).astype(np.int32), 1.0, lineType=cv2.LINE_AA, shift=4)
    sigma = 0.03 * size
    mask = cv2.GaussianBlur(mask, (0, 0), sigma)
    distance_to_edge = np.minimum(np.arange(size), np.arange(size)[::-1]).astype(np.float32)
    edge_ramp = np.clip(distance_to_edge / (2 * sigma), 0, 1)
    return mask * edge_ramp[:, None] * edge_ramp[None, :]


def _paste_window(aligned: AlignedFace, size: int) -> tuple[tuple[int, int, int, int], np.ndarray, np.ndarray]:
    """Photo box a ``size × size`` edit covers, the crop → box transform, and the blend weight in the box."""
    to_crop = _resized_crop_matrix(aligned, size)
    left, top, right, bottom = _footprint(to_crop, (size, size), aligned.photo_size)
    crop_to_box = cv2.invertAffineTransform(to_crop)
    crop_to_box[:, 2] -= (left, top)
    weight = cv2.warpAffine(_crop_mask(aligned, size), crop_to_box, (right - left, bottom - top),
                            flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)  # fmt: skip
    return (left, top, right, bottom), crop_to_box, np.clip(weight, 0.0, 1.0)


def paste_mask(aligned: AlignedFace) -> np.ndarray:
    """``(H, W)`` float32 in ``[0, 1]``: how much of an edited crop :func:`paste_back` puts in each photo pixel.

    Pixels where it is 0 are left exactly as they were.
    """
    (left, top, right, bottom), _, weight = _paste_window(aligned, aligned.image.width)
    mask = np.zeros((aligned.photo_size[1], aligned.photo_size[0]), dtype=np.float32)
    mask[top:bottom, left:right] = weight
    return mask


def paste_back(photo: str | Path | Image.Image | np.ndarray, edited: Image.Image, aligned: AlignedFace) -> Image.Image:
    """Put an edited crop back into the photo it was cut from.

    The crop is warped back by the inverse of the alignment and blended in with :func:`paste_mask`:
    the face region changes, the rest of the photo stays exactly as it was. The edited crop may have a
    different size from ``aligned.image`` (e.g. the output of a network at another resolution). A crop
    smaller than the face in the photo (``aligned.scale < 1``) cannot restore the photo's detail:
    paste back at the face's own resolution where that matters.

    Args:
        photo: the photo ``aligned`` was cut from.
        edited: square RGB crop aligned like ``aligned.image``.
        aligned: from :func:`align_face`.

    Returns:
        A new RGB photo of the same size.
    """
    photo = load_image(photo)
    if photo.size != aligned.photo_size:
        raise ValueError(f"The photo is {photo.size}, but the face was aligned in a photo of {aligned.photo_size}.")
    if edited.width != edited.height:
        raise ValueError(f"The edited crop must be square, got {edited.width}×{edited.height}.")
    (left, top, right, bottom), crop_to_box, weight = _paste_window(aligned, edited.width)
    warped = cv2.warpAffine(np.asarray(edited.convert("RGB")), crop_to_box, (right - left, bottom - top),
                            flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
    result = np.array(photo)
    box = result[top:bottom, left:right].astype(np.float32)
    blended = box + weight[:, :, None] * (warped.astype(np.float32) - box)
    result[top:bottom, left:right] = np.clip(blended.round(), 0, 255).astype(np.uint8)
    return Image.fromarray(result)


def paste_edit(photo: str | Path | Image.Image | np.ndarray, aligned: AlignedFace, offsets: np.ndarray,
               color: np.ndarray, mask: np.ndarray) -> Image.Image:  # fmt: skip
    """Apply an edit of the crop to the photo at the photo's own resolution: warp the photo, add texture under the mask.

    The motion: the crop's deformation (a displacement per crop pixel) is mapped into photo pixels through
    the crop's similarity transform and the photo itself is resampled, so the moved face keeps the photo's
    detail. The texture: the texture map and attention mask are brought back to the photo and blended,
    ``M·T + (1 − M)·warped photo``, so where the mask is 0 the photo's own pixels are kept, only moved.
    Both fade to zero with :func:`paste_mask` at the edge of the face's footprint, so no seam appears and
    no pixel outside the footprint changes; an edit that moves nothing and adds no texture returns the
    photo exactly.

    Args:
        photo: the photo ``aligned`` was cut from.
        aligned: from :func:`align_face`.
        offsets: ``(S, S, 2)`` float, the crop's backward displacement ``G − Id`` in crop pixels, ``(x, y)``
            (:func:`defgan_hf.warp.grid_offsets_px`); ``S`` may differ from ``aligned.image``'s size.
        color: ``(S, S, 3)`` float RGB in ``[0, 255]``, the texture map ``T``.
        mask: ``(S, S)`` float in ``[0, 1]``, the attention mask ``M`` (1: the texture replaces the photo).

    Returns:
        A new RGB photo of the same size.
    """
    photo = load_image(photo)
    if photo.size != aligned.photo_size:
        raise ValueError(f"The photo is {photo.size}, but the face was aligned in a photo of {aligned.photo_size}.")
    size = offsets.shape[0]
    if offsets.shape != (size, size, 2) or color.shape != (size, size, 3) or mask.shape != (size, size):
        raise ValueError(f"offsets, color and mask must be (S, S, 2), (S, S, 3) and (S, S) for one S, got "
                         f"{offsets.shape}, {color.shape} and {mask.shape}.")  # fmt: skip
    (left, top, right, bottom), crop_to_box, weight = _paste_window(aligned, size)
    box_size = (right - left, bottom - top)

    def to_box(values: np.ndarray, border: int) -> np.ndarray:
        return cv2.warpAffine(values, crop_to_box, box_size, flags=cv2.INTER_LINEAR, borderMode=border, borderValue=0)

    # A displacement d in crop pixels is L⁻¹·d in photo pixels, L the linear part of photo → crop.
    crop_from_photo = _resized_crop_matrix(aligned, size)[:, :2]
    offsets = np.ascontiguousarray(offsets, dtype=np.float32)
    displacement = to_box(offsets, cv2.BORDER_REPLICATE) @ np.linalg.inv(crop_from_photo).T.astype(np.float32)
    displacement *= weight[:, :, None]
    columns, rows = np.meshgrid(np.arange(left, right, dtype=np.float32), np.arange(top, bottom, dtype=np.float32))
    pixels = np.asarray(photo)
    # Cubic resampling keeps the photo's sharpness; at whole-pixel positions it returns the pixels exactly.
    warped = cv2.remap(pixels, columns + displacement[:, :, 0], rows + displacement[:, :, 1], cv2.INTER_CUBIC,
                       borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
    texture_weight = to_box(np.ascontiguousarray(mask, dtype=np.float32), cv2.BORDER_CONSTANT) * weight
    if texture_weight.max() > 0:
        texture = to_box(np.clip(np.asarray(color, dtype=np.float32).round(), 0, 255).astype(np.uint8),
                         cv2.BORDER_REPLICATE)  # fmt: skip
        # (w·T + (1 − w)·warped) / 1, rounded; where w is 0 the warped photo comes back exactly.
        warped = cv2.blendLinear(texture, warped, texture_weight, 1.0 - texture_weight)
    result = pixels.copy()
    result[top:bottom, left:right] = warped
    return Image.fromarray(result)
