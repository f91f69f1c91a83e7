"""`python run.py --mode=align`: an aligned, cropped copy of a database, resumable, with a summary.

For each clip (see `plan`): 68 landmarks on its onset frame -> one similarity onto the template
(`geometry`) -> every frame warped by it (`warp`), so the crop itself adds no motion. A clip is
written into `<aligned root>/.align-tmp/` and renamed into place when complete: a clip folder
that exists is finished and skipped on the next run; an interrupted one is redone. Settings are
recorded in `<aligned root>/.align.json` (a run with other settings is refused rather than mixing
crops), and one JSON line per clip (transform, face found or fallback) in `.align_log.jsonl`.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import shutil
import sys
import time
from typing import TextIO

import ml_collections
import numpy as np
from tqdm import tqdm

from cmnet_jax import config_blocks
from cmnet_jax.align import face as face_lib
from cmnet_jax.align import geometry
from cmnet_jax.align import plan as plan_lib
from cmnet_jax.align import warp
from cmnet_jax.config_blocks import (BOOL, FLOAT, INT, STR, Field, at_least, in_range,
                                     non_negative, one_of)
from cmnet_jax.datasets import index as index_lib

SETTINGS_FILE, LOG_FILE, TMP_FOLDER = ".align.json", ".align_log.jsonl", ".align-tmp"
_OUTPUT_KEYS = ("size", "margin", "fallback", "redetect", "detect_width", "jpeg_quality")


class AlignError(Exception):
  """An aligned folder that cannot be written (other settings, not ours, a clashing file)."""


@dataclasses.dataclass
class Summary:
  out_root: str
  aligned: list = dataclasses.field(default_factory=list)   # unit names aligned by this run
  done_before: int = 0                                      # units found finished and skipped
  redone: int = 0                                           # unfinished temp folders removed
  no_face: list = dataclasses.field(default_factory=list)   # (clip, reference frame, fallback)
  frames: int = 0
  seconds: float = 0.0


# The `align` block, declared once (configs/common.py align_config builds it from these defaults).
SPEC = config_blocks.Spec({
    "size": Field(INT, at_least(8), "aligned crops are size x size pixels", default=224),
    "margin": Field(FLOAT, in_range(0, 2), "fraction of the face box added on each side",
                    default=0.1),
    "fallback": Field(STR, one_of("centre", "whole"), "when no face is found: 'centre' square "
                      "crop | 'whole' frame resized", default="centre"),
    "redetect": Field(BOOL, doc="True = landmarks on every frame (onset's transform if none)",
                      default=False),
    "detect_width": Field(INT, non_negative, "detect on a copy this wide; 0 = full size",
                          default=640),
    "jpeg_quality": Field(INT, in_range(1, 100), "for jpg frames; bmp/png are written lossless",
                          default=95),
    "workers": Field(INT, non_negative, "threads decoding/warping/writing frames; 0 = min(8, "
                     "CPUs)", default=0),
})


def settings(config: ml_collections.ConfigDict) -> dict:
  """The `align` block, typed and checked (`config_blocks.ConfigError` naming each bad key)."""
  return config_blocks.read_block(config.align, SPEC, "align")


def output_root(config: ml_collections.ConfigDict) -> str:
  """`data.aligned_root`, or `<data.root>_aligned` when it is ''."""
  if not config.data.root:
    raise AlignError("config key data.root is empty; pass --config.data.root=/path/to/database")
  return config.data.aligned_root or os.path.normpath(config.data.root) + "_aligned"


def _check_settings(out_root: str, recorded: dict) -> None:
  path = os.path.join(out_root, SETTINGS_FILE)
  if not os.path.isfile(path):
    if os.path.isdir(out_root) and os.listdir(out_root):
      raise AlignError(f"{out_root!r} exists, is not empty and was not written by --mode=align "
                       f"(no {SETTINGS_FILE}); pass another --config.data.aligned_root")
    return
  with open(path) as f:
    before = json.load(f)
  for key, value in recorded.items():
    if before.get(key) != value:
      raise AlignError(f"{out_root!r} was aligned with {key}={before.get(key)!r} ({path}), the "
                       f"config now says {value!r}; keep the setting, or pass another "
                       f"--config.data.aligned_root (or remove that folder) to start afresh")


def _check_annotations(pairs) -> None:
  for src, dst in pairs:
    if os.path.exists(dst):
      with open(src, "rb") as a, open(dst, "rb") as b:
        if a.read() != b.read():
          raise AlignError(f"{dst!r} exists and differs from the annotation file {src!r}; "
                           f"remove it or choose another data.aligned_root")


def _copy_atomic(src: str, dst: str) -> None:
  os.makedirs(os.path.dirname(dst), exist_ok=True)
  shutil.copy2(src, dst + ".tmp-align")
  os.replace(dst + ".tmp-align", dst)


def _transform(finder, path: str, cfg: dict) -> tuple[np.ndarray, bool]:
  """(source -> crop matrix, whether a face was found) for one frame."""
  try:
    grey = warp.read_grey(path)
  except (OSError, SyntaxError, ValueError) as e:
    raise index_lib.DatasetError(f"corrupt or unreadable image {path!r} ({e}); expected a "
                                 f"jpg/bmp/png frame") from e
  landmarks = finder.landmarks(grey)
  if landmarks is None:
    height, width = grey.shape
    return geometry.fallback_matrix(width, height, cfg["size"], cfg["fallback"]), False
  target = geometry.template_points(cfg["size"], cfg["margin"])
  return geometry.similarity(geometry.five_points(landmarks), target), True


def _align_unit(unit: plan_lib.Unit, tmp: str, finder, cfg: dict, pool) -> dict:
  """Writes `unit` into the folder `tmp`; returns its log record."""
  os.makedirs(tmp)
  record = {"clip": unit.name, "dst": unit.dst, "frames": unit.num_frames, "segments": []}
  redetected = []
  for segment in unit.segments:
    matrix, found = _transform(finder, segment.reference, cfg)
    record["segments"].append({"reference": os.path.basename(segment.reference), "face": found,
                               "fallback": None if found else cfg["fallback"],
                               "matrix": matrix[:2].round(6).tolist()})

    def one(src, matrix=matrix):
      if cfg["redetect"] and src != segment.reference:
        own, ok = _transform(finder, src, cfg)
        redetected.append(ok)
        matrix = own if ok else matrix
      warp.align_file(src, os.path.join(tmp, os.path.basename(src)), matrix, cfg["size"],
                      cfg["jpeg_quality"], unit.name)

    list(pool.map(one, segment.frames))
  for src in unit.copies:
    shutil.copy2(src, os.path.join(tmp, os.path.basename(src)))
  if cfg["redetect"]:
    record["redetected"] = sum(redetected)
  return record


def align_database(config: ml_collections.ConfigDict, *, out: TextIO = sys.stdout,
                   progress: bool = True) -> Summary:
  """Aligns the database `config.data` names into `output_root(config)`; see the module doc."""
  cfg = settings(config)
  out_root = output_root(config)
  plan = plan_lib.make_plan(config.data.name, config.data.root, out_root,
                            config.data.annotation or None)
  recorded = {"data.name": config.data.name, "data.root": os.path.abspath(config.data.root),
              **{f"align.{k}": cfg[k] for k in _OUTPUT_KEYS}}
  _check_settings(out_root, recorded)
  _check_annotations(plan.annotations)
  finder = face_lib.load(cfg["detect_width"])  # before any write: a missing package stops here
  summary = Summary(out_root)
  os.makedirs(out_root, exist_ok=True)
  with open(os.path.join(out_root, SETTINGS_FILE), "w") as f:
    json.dump({**recorded, "detector": finder.version}, f, indent=1)
  tmp_root = os.path.join(out_root, TMP_FOLDER)
  if os.path.isdir(tmp_root):
    summary.redone = len(os.listdir(tmp_root))
    shutil.rmtree(tmp_root)
  for src, dst in plan.annotations:
    _copy_atomic(src, dst)
  todo = [u for u in plan.units if not os.path.isdir(u.dst)]
  summary.done_before = len(plan.units) - len(todo)
  start = time.perf_counter()
  workers = cfg["workers"] or min(8, os.cpu_count() or 1)
  bar = tqdm(total=sum(u.num_frames for u in todo), unit="frame", disable=not progress,
             desc=f"aligning {len(todo)} clips", file=sys.stderr, mininterval=1.0)
  with concurrent.futures.ThreadPoolExecutor(workers) as pool, \
      open(os.path.join(out_root, LOG_FILE), "a") as log:
    for i, unit in enumerate(todo):
      tmp = os.path.join(tmp_root, str(i))
      record = _align_unit(unit, tmp, finder, cfg, pool)
      os.makedirs(os.path.dirname(unit.dst), exist_ok=True)
      os.rename(tmp, unit.dst)
      log.write(json.dumps({**record, "dst": os.path.relpath(unit.dst, out_root)}) + "\n")
      log.flush()
      summary.aligned.append(unit.name)
      summary.frames += unit.num_frames
      bar.update(unit.num_frames)
  bar.close()
  summary.seconds = time.perf_counter() - start
  if os.path.isdir(tmp_root):
    os.rmdir(tmp_root)
  summary.no_face = _no_face(out_root)
  print(report(summary, config.data.name, plan), file=out)
  return summary


def _no_face(out_root: str) -> list[tuple[str, str, str]]:
  """(clip, reference frame, fallback) of every aligned clip, this run or earlier, with no face."""
  latest = {}
  with open(os.path.join(out_root, LOG_FILE)) as f:
    for line in f:
      if line.strip():
        row = json.loads(line)
        latest[row["dst"]] = row
  return [(row["clip"], s["reference"], s["fallback"]) for row in latest.values()
          for s in row["segments"] if not s["face"]]


def report(summary: Summary, name: str, plan: plan_lib.Plan) -> str:
  """The summary printed at the end of a run."""
  rate = summary.frames / summary.seconds if summary.seconds > 0 else 0.0
  lines = [f"aligned {len(summary.aligned)} clips ({summary.frames} frames) in "
           f"{summary.seconds:.1f} s ({rate:.1f} frames/s); {summary.done_before} clips were "
           f"already aligned and skipped" + (f"; redid {summary.redone} clips an interrupted "
                                             f"run left unfinished" if summary.redone else "")]
  fallback = {"centre": "central square crop", "whole": "whole frame resized"}
  lines.append(f"no face found in {len(summary.no_face)} clips" + (":" if summary.no_face else ""))
  lines += [f"  {clip} (reference frame {frame}): {fallback[how]} used"
            for clip, frame, how in summary.no_face]
  left_out = sum(u.left_out for u in plan.units)
  if left_out:
    lines.append(f"left out {left_out} video frames outside every ME (the reader never reads "
                 f"them)")
  if plan.skipped:
    lines.append(f"{len(plan.skipped)} annotation rows/folders the reader skips were not "
                 f"aligned (e.g. {plan.skipped[0].item}: {plan.skipped[0].reason})")
  lines.append(f"aligned copy: {summary.out_root}; train on it with "
               f"--config.data.root={summary.out_root}")
  return "\n".join(lines)


def main(config: ml_collections.ConfigDict) -> int:
  """`--mode=align`: exit code 0, or 1 with a one-line error (DatasetError is the caller's)."""
  try:
    align_database(config)
  except config_blocks.ConfigError as e:
    for problem in e.problems:
      print(f"error: {problem}", file=sys.stderr)
    return 1
  except (AlignError, face_lib.MissingPackagesError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  return 0
