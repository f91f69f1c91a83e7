"""Similarity transforms for face alignment: template, least-squares fit, and the Pillow form.

The fit is scikit-image's; what is here is what neither it nor dlib has: the 5-point template
in a crop with a margin, the 68 -> 5 landmark reduction, the no-face fallback and Pillow's
inverse affine form.

Coordinates are continuous pixel coordinates (x right, y down; pixel (i, j) covers
[j, j + 1) x [i, i + 1), so its centre is (j + 0.5, i + 0.5)), the convention of Pillow's
`Image.transform`. A transform is a 3x3 matrix M acting on homogeneous column vectors
(x, y, 1): source frame -> aligned crop.

The canonical template is the 5-point face template of ArcFace (InsightFace) in a unit face box:
the two eye centres, the nose tip and the two mouth corners. With margin m and output size S a
template point u in [0, 1]^2 lands at  q = S (u + m) / (1 + 2 m)  in the crop.

>>> import numpy as np
>>> t = template_points(112, 0.0)
>>> t[:2].round(1).tolist()   # eye centres of the ArcFace 112 x 112 crop
[[38.3, 51.7], [73.5, 51.5]]
>>> m = np.array([[2.0, -1.0, 5.0], [1.0, 2.0, 0.0], [0.0, 0.0, 1.0]])  # a similarity
>>> apply(m, [[1.0, 0.0]]).tolist(), round(scale(m) ** 2, 6), round(rotation_deg(m), 2)
([[7.0, 1.0]], 5.0, 26.57)
"""
from __future__ import annotations

import numpy as np

# ArcFace's template in its 112 x 112 crop: eye centres (image left first), nose tip, mouth corners.
_ARCFACE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                         [41.5493, 92.3655], [70.7299, 92.2041]])
UNIT_TEMPLATE = _ARCFACE_112 / 112.0
# dlib's 68-point indices: 36-41 image-left eye, 42-47 image-right eye, 30 nose tip, 48/54 mouth.
LEFT_EYE, RIGHT_EYE, NOSE_TIP, MOUTH_LEFT, MOUTH_RIGHT = range(36, 42), range(42, 48), 30, 48, 54


def template_points(size: int, margin: float) -> np.ndarray:
  """The 5 template points in an output crop of `size` x `size` pixels: float `[5, 2]`.

  `margin` widens the face box by that fraction of its side on every side (0 = ArcFace's crop).
  """
  if size < 8 or not 0.0 <= margin <= 2.0:
    raise ValueError(f"need size >= 8 and 0 <= margin <= 2, got size={size}, margin={margin}")
  return size * (UNIT_TEMPLATE + margin) / (1.0 + 2.0 * margin)


def five_points(landmarks: np.ndarray) -> np.ndarray:
  """68 landmarks `[68, 2]` -> eye centres, nose tip, mouth corners `[5, 2]` (template order)."""
  landmarks = np.asarray(landmarks, np.float64)
  if landmarks.shape != (68, 2):
    raise ValueError(f"expected 68 landmarks of shape (68, 2), got {landmarks.shape}")
  return np.stack([landmarks[list(LEFT_EYE)].mean(0), landmarks[list(RIGHT_EYE)].mean(0),
                   landmarks[NOSE_TIP], landmarks[MOUTH_LEFT], landmarks[MOUTH_RIGHT]])


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
  """Least-squares similarity taking points `src [n, 2]` onto `dst [n, 2]`: the 3x3 matrix
  [[s R, t], [0, 0, 1]] minimising  sum_i |s R src_i + t - dst_i|^2  over scale s > 0, rotation R
  (no reflection) and translation t. scikit-image's `SimilarityTransform.from_estimate` (Umeyama
  1991) fits it (requirements-align.txt, as dlib for `--mode=align`).
  """
  try:
    from skimage import transform  # pylint: disable=import-outside-toplevel  (align extra)
  except ImportError as e:
    from cmnet_jax.align import face  # pylint: disable=import-outside-toplevel
    raise face.MissingPackagesError(
        f"the face alignment needs scikit-image ({e}); install the alignment packages: pip "
        f"install -r {face.REQUIREMENTS}") from e
  src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
  if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
    raise ValueError(f"need matching point sets [n >= 2, 2], got {src.shape} and {dst.shape}")
  if ((src - src.mean(0)) ** 2).sum() / len(src) <= 1e-12:
    raise ValueError("source points coincide: no similarity is defined")
  fitted = transform.SimilarityTransform.from_estimate(src, dst)
  if not fitted:
    raise ValueError(f"no similarity fits these points ({fitted})")
  return np.array(fitted.params, np.float64)


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
  """Points `[n, 2]` mapped by a 3x3 affine matrix."""
  points = np.asarray(points, np.float64)
  return points @ matrix[:2, :2].T + matrix[:2, 2]


def scale(matrix: np.ndarray) -> float:
  """Output pixels per source pixel (geometric mean of the two axes' scales)."""
  return float(np.sqrt(abs(np.linalg.det(matrix[:2, :2]))))


def rotation_deg(matrix: np.ndarray) -> float:
  """Rotation of a similarity in degrees (positive = the image turns clockwise, y down)."""
  return float(np.degrees(np.arctan2(matrix[1, 0], matrix[0, 0])))


def fallback_matrix(width: int, height: int, size: int, mode: str) -> np.ndarray:
  """The transform used when no face is found: 'centre' = the central square of side
  min(width, height) scaled to size x size; 'whole' = the whole frame resized to size x size
  (aspect ratio not kept, as the readers do for unaligned frames).

  >>> fallback_matrix(200, 100, 50, 'centre').round(3).tolist()
  [[0.5, 0.0, -25.0], [0.0, 0.5, 0.0], [0.0, 0.0, 1.0]]
  """
  m = np.eye(3)
  if mode == "centre":
    side = min(width, height)
    m[0, 0] = m[1, 1] = size / side
    m[0, 2], m[1, 2] = -(width - side) / 2 * size / side, -(height - side) / 2 * size / side
  elif mode == "whole":
    m[0, 0], m[1, 1] = size / width, size / height
  else:
    raise ValueError(f"unknown fallback {mode!r}; expected 'centre' or 'whole'")
  return m


def pillow_affine(matrix: np.ndarray) -> tuple[float, ...]:
  """`Image.transform(..., Image.AFFINE, data)` coefficients (a, b, c, d, e, f) for `matrix`:
  Pillow samples the source at (a x + b y + c, d x + e y + f) for output point (x, y), i.e. the
  first two rows of the inverse.

  >>> pillow_affine(np.diag([2.0, 2.0, 1.0]))
  (0.5, 0.0, 0.0, 0.0, 0.5, 0.0)
  """
  inverse = np.linalg.inv(np.asarray(matrix, np.float64))
  return tuple(float(v) for v in inverse[:2].reshape(-1))
