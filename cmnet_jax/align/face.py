"""Face detection and 68 landmarks with dlib, models found on disk (no download at run time).

dlib's HOG frontal-face detector is built into the `dlib-bin` wheel; the 68-point shape
predictor (`shape_predictor_68_face_landmarks.dat`, trained on iBUG 300-W) ships inside the
`face-recognition-models` package, whose files are located without importing it (its
`__init__` needs `pkg_resources`, which new setuptools releases no longer provide). Both come from
`requirements-align.txt`; without them `load()` raises `MissingPackagesError` naming that file.

Detection runs on a copy downscaled to `detect_width` pixels wide (fast on full-HD frames), then
at full size, then upsampled once, stopping at the first that finds a face; of several faces the
one with the highest detector score is kept. Landmarks are fitted on the full-size frame.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import threading

import numpy as np
from PIL import Image

REQUIREMENTS = "requirements-align.txt"
PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"


class MissingPackagesError(RuntimeError):
  """The optional alignment packages (dlib-bin, face-recognition-models) are not installed."""


def predictor_path() -> str:
  """Path of the 68-point model inside the installed `face_recognition_models` package."""
  spec = importlib.util.find_spec("face_recognition_models")
  folders = list(spec.submodule_search_locations or []) if spec else []
  for folder in folders:
    path = os.path.join(folder, "models", PREDICTOR_FILE)
    if os.path.isfile(path):
      return path
  raise MissingPackagesError(
      f"the face landmark model {PREDICTOR_FILE} was not found (package face-recognition-models "
      f"{'has no such file in ' + str(folders) if folders else 'is not installed'}); "
      f"install the alignment packages: pip install -r {REQUIREMENTS}")


def _import_dlib():
  try:
    import dlib  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise MissingPackagesError(f"--mode=align needs dlib ({e}); install the alignment "
                               f"packages: pip install -r {REQUIREMENTS}") from e
  return dlib


class FaceFinder:
  """`landmarks(grey)` -> float `[68, 2]` in continuous pixel coordinates, or None (no face).

  Thread-safe (one lock around dlib). `detect_width` 0 = detect at full size only.
  """

  def __init__(self, detect_width: int = 640):
    dlib = _import_dlib()
    path = predictor_path()
    self._dlib = dlib
    self._detector = dlib.get_frontal_face_detector()
    self._predictor = dlib.shape_predictor(path)
    self._lock = threading.Lock()
    self.detect_width = int(detect_width)
    self.version = f"dlib {dlib.__version__} HOG detector + {PREDICTOR_FILE}"

  def _tries(self, width: int) -> list[tuple[float, int]]:
    """(scale, upsample) attempts in order: downscaled, full size, full size upsampled once."""
    tries = []
    if 0 < self.detect_width < width:
      tries.append((self.detect_width / width, 0))
    return tries + [(1.0, 0), (1.0, 1)]

  def landmarks(self, grey: np.ndarray) -> np.ndarray | None:
    """68 landmarks of the best-scoring face in a uint8 `[height, width]` image, or None."""
    grey = np.ascontiguousarray(grey, np.uint8)
    if grey.ndim != 2:
      raise ValueError(f"expected a grey image [height, width], got shape {grey.shape}")
    height, width = grey.shape
    with self._lock:
      for factor, upsample in self._tries(width):
        image = grey
        if factor < 1.0:
          small = (max(1, round(width * factor)), max(1, round(height * factor)))
          image = np.asarray(Image.fromarray(grey).resize(small, Image.Resampling.BILINEAR))
        rects, scores, _ = self._detector.run(image, upsample, 0.0)
        if len(rects):
          best = rects[int(np.argmax(scores))]
          fx, fy = width / image.shape[1], height / image.shape[0]
          rect = self._dlib.rectangle(int(best.left() * fx), int(best.top() * fy),
                                      int(best.right() * fx), int(best.bottom() * fy))
          shape = self._predictor(grey, rect)
          return np.array([[p.x + 0.5, p.y + 0.5] for p in shape.parts()], np.float64)
    return None


@functools.lru_cache(maxsize=4)
def load(detect_width: int = 640) -> FaceFinder:
  """The detector and landmarker (loaded once per process: the model takes about a second), or
  `MissingPackagesError` naming requirements-align.txt."""
  return FaceFinder(detect_width)
