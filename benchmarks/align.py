"""Speed of `--mode=align` on one clip of full-HD frames (issue 16: 100 frames under 10 s on 2
CPU cores, detection and landmarks once per clip).

    python benchmarks/align.py                      # 100 frames of 1920 x 1080, grey and colour
    python benchmarks/align.py --frames 20 --workers 1
    python benchmarks/align.py --redetect           # align.redetect: landmarks on every frame

Writes a SAMM-format tree (grey jpg, as SAMM ships) and a CAS(ME)^3 clip-release tree (colour
jpg) of one clip each: the astronaut portrait (`skimage.data.astronaut()`, requirements-align.txt)
pasted at 2.6x (a face of about 230 px, as in SAMM's 2040 x 1088 frames) into a textured
full-HD background, moving 0.3 px per frame. Then times `runner.align_database` end to end
(planning, one detection + landmarks, decoding, warping to 224 x 224 and writing every frame),
and separately one detection + landmarks on a full-HD frame. Tree writing is not timed.
"""
from __future__ import annotations

import argparse
import io
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import PIL  # noqa: E402
from PIL import Image  # noqa: E402

from cmnet_jax.align import face as face_lib  # noqa: E402
from cmnet_jax.align import runner  # noqa: E402
from cmnet_jax.align import warp  # noqa: E402
from cmnet_jax.testing import face_scenes  # noqa: E402
from cmnet_jax.testing import fake_trees  # noqa: E402
from configs import common  # noqa: E402

FRAME = (1080, 1920)


def _head() -> np.ndarray:
  try:
    from skimage import data  # pylint: disable=g-import-not-at-top
  except ImportError:
    sys.exit("benchmarks/align.py needs scikit-image: pip install -r requirements-align.txt")
  rgb = data.astronaut()[face_scenes.ASTRONAUT_HEAD]
  height, width = rgb.shape[:2]
  return np.asarray(Image.fromarray(rgb).resize((int(width * 2.6), int(height * 2.6)),
                                                Image.Resampling.BICUBIC))


def _write_clip(paths: list[str], head: np.ndarray) -> None:
  background = face_scenes.texture(*FRAME, seed=0, channels=head.shape[2] if head.ndim == 3 else 0)
  for k, path in enumerate(paths):
    matrix = face_scenes.placement(head.shape[:2], (960 + 0.3 * k, 560), 1.0, 4.0)
    fake_trees.write_image(path, face_scenes.paste(background, head, matrix))


def _tree(kind: str, root: str, frames: int, head: np.ndarray) -> list[str]:
  """A one-clip tree of `frames` full-HD frames; returns its frame paths."""
  if kind == "samm":
    row = dict(subject=6, filename="006_1_2", onset=1000, apex=1001, offset=999 + frames,
               action_units="4", emotion="Anger")
    fake_trees.write_samm_tree(root, [row], size=(2, 2))
    folder = os.path.join(root, "SAMM", "006", "006_1_2")
    paths = [os.path.join(folder, f"006_{n:05d}.jpg") for n in range(1000, 1000 + frames)]
    _write_clip(paths, face_scenes.luma(head))
  else:
    row = dict(subject="spNO.1", filename="a", onset=355, apex=356, offset=354 + frames,
               action_units="4", emotion="happy")
    fake_trees.write_casme3_tree(root, [row], size=(2, 2))
    folder = os.path.join(root, "Part_A_ME_clip", "frame", "spNO.1_a_355")
    paths = [os.path.join(folder, f"{n}.jpg") for n in range(355, 355 + frames)]
    _write_clip(paths, head)
  return paths


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--frames", type=int, default=100)
  parser.add_argument("--workers", type=int, default=0, help="align.workers (0 = min(8, CPUs))")
  parser.add_argument("--redetect", action="store_true", help="align.redetect = True")
  args = parser.parse_args()
  import dlib  # pylint: disable=g-import-not-at-top
  cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  print(f"machine: {platform.processor() or platform.machine()}, {cpus} CPU cores available; "
        f"Python {platform.python_version()}, dlib {dlib.__version__}, Pillow {PIL.__version__}, "
        f"NumPy {np.__version__}")
  print(f"command: python benchmarks/align.py --frames {args.frames} --workers {args.workers}"
        + (" --redetect" if args.redetect else ""))
  head = _head()
  finder = face_lib.load(common.align_config().detect_width)
  with tempfile.TemporaryDirectory() as tmp:
    for kind in ("samm", "casme3"):
      root = os.path.join(tmp, kind)
      paths = _tree(kind, root, args.frames, head)
      grey = warp.read_grey(paths[0])
      start = time.perf_counter()
      found = finder.landmarks(grey)
      detect_s = time.perf_counter() - start
      config = common.base_config(kind)
      config.data.root = root
      config.align.workers = args.workers
      config.align.redetect = args.redetect
      start = time.perf_counter()
      summary = runner.align_database(config, out=io.StringIO(), progress=False)
      total = time.perf_counter() - start
      mode = "grey" if kind == "samm" else "colour"
      print(f"{kind} ({mode} jpg, {args.frames} frames of {FRAME[1]}x{FRAME[0]} -> "
            f"{config.align.size}x{config.align.size}): {total:.2f} s end to end, "
            f"{args.frames / total:.1f} frames/s; detection + landmarks on one frame "
            f"{detect_s * 1000:.0f} ms (face found: {found is not None}); "
            f"no-face clips: {len(summary.no_face)}")


if __name__ == "__main__":
  main()
