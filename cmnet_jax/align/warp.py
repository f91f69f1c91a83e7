"""Reading a frame, warping it by a similarity into the aligned crop, and writing it back out in
the same format and colour mode (grey stays grey, jpg stays jpg, bmp stays bmp).

Large reductions are done at decode time (JPEG DCT scaling, `Image.draft`) or by an integer box
reduction (`Image.reduce`) before the bilinear warp, so a face several times larger than the crop
is averaged, not aliased, and a full-HD frame is decoded at a fraction of the cost. Outside the
source frame the crop is filled with black.
"""
from __future__ import annotations

import os

import numpy as np
from PIL import Image

from cmnet_jax.align import geometry
from cmnet_jax.datasets import frames as frames_lib
from cmnet_jax.datasets import index as index_lib

FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".png": "PNG"}


def read_grey(path: str) -> np.ndarray:
  """A frame as uint8 `[height, width]` luma (ITU-R 601; 16-bit grey scaled as the readers do),
  for detection."""
  with Image.open(path) as image:
    return np.asarray(frames_lib.to_rgb8(image).convert("L"))


def frame_size(path: str) -> tuple[int, int]:
  """(width, height) of an image file, read from its header."""
  with Image.open(path) as image:
    return image.size


def _reduced(image: Image.Image, factor: float) -> tuple[Image.Image, float, float]:
  """`image` shrunk by about `factor` (>= 1) before warping, and its (x, y) shrink factors."""
  width, height = image.size
  if factor >= 2 and image.format == "JPEG":
    image.draft(image.mode, (int(np.ceil(width / factor)), int(np.ceil(height / factor))))
  image.load()
  remaining = factor * image.size[0] / width
  if remaining >= 2:
    image = image.reduce(int(remaining))
  return image, width / image.size[0], height / image.size[1]


def warp_image(image: Image.Image, matrix: np.ndarray, size: int) -> Image.Image:
  """`image` (any size) warped by `matrix` (source pixels -> crop pixels) into a `size` x `size`
  crop, bilinear. Modes 'L', 'RGB' and 16-bit grey ('I;16', warped as 'I') are kept; others
  become 'RGB'."""
  sixteen = image.mode.startswith("I;16")
  if sixteen:
    image = image.convert("I")
  image, fx, fy = _reduced(image, 1.0 / max(geometry.scale(matrix), 1e-6))
  if image.mode not in ("L", "RGB", "I"):
    image = image.convert("RGB")
  shrunk = matrix @ np.diag([fx, fy, 1.0])  # reduced pixels -> source pixels -> crop
  out = image.transform((size, size), Image.Transform.AFFINE, geometry.pillow_affine(shrunk),
                        resample=Image.Resampling.BILINEAR, fillcolor=0)
  return out.convert("I;16") if out.mode == "I" else out


def align_file(src: str, dst: str, matrix: np.ndarray, size: int, jpeg_quality: int = 95,
               item: str = "") -> None:
  """Writes `src` warped by `matrix` to `dst` (same suffix and format as `src`); DatasetError
  naming the file if it cannot be read as an image."""
  suffix = os.path.splitext(dst)[1].lower()
  try:
    with Image.open(src) as image:
      out = warp_image(image, matrix, size)
  except (OSError, SyntaxError, ValueError) as e:
    raise index_lib.DatasetError(f"{item}: corrupt or unreadable image {src!r} ({e}); expected "
                                 f"a jpg/bmp/png frame") from e
  options = {"quality": int(jpeg_quality)} if FORMATS.get(suffix) == "JPEG" else {}
  out.save(dst, format=FORMATS.get(suffix), **options)
