"""Which folders to align, which frame is each one's reference, and which files to copy.

Clips are found by the database readers' `read_records` (every coded clip whose folder exists,
before any class scheme filters them: alignment keeps all clips, training picks later), so the
aligned tree holds exactly what the readers can use. One `Unit` is one output folder, written as
a whole (atomically) by the runner:

- a clip folder (CASME II, SAMM, SMIC, the CAS(ME)^3 clip release): every image in the folder,
  the frames outside onset..offset too (CASME2-RAW's full clips), with the one transform of the
  clip's onset frame (the first frame as the reader indexes it);
- a CAS(ME)^3 video folder (`part_A/.../a/color/`), shared by several MEs: only the frames of the
  MEs, each ME with the transform of its own onset frame (MEs whose frame ranges overlap are one
  segment, referenced on the earliest onset). The rest of a minutes-long video is never read by
  the reader and is left out, as are the `depth/` frames.

For 'megc2019' each part (CASME2/, SAMM/, SMIC/ under the root) is planned with its own reader.
Annotation files are copied unchanged to the same place relative to the root (or into the aligned
root when they lie outside the root).
"""
from __future__ import annotations

import dataclasses
import importlib
import os

from cmnet_jax.datasets import frames as frames_lib
from cmnet_jax.datasets import index as index_lib

DATABASES = ("casme2", "samm", "smic", "casme3", "megc2019")


@dataclasses.dataclass(frozen=True)
class Segment:
  """Frames warped with the transform computed on `reference` (a source frame path)."""
  reference: str
  frames: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Unit:
  """One output folder: `src` -> `dst`, its segments, other files copied as they are."""
  name: str                  # e.g. 'samm 006/006_1_2' (database subject/clip), for messages
  src: str
  dst: str
  segments: tuple[Segment, ...]
  copies: tuple[str, ...] = ()
  left_out: int = 0          # frames in `src` not written (CAS(ME)^3 video frames outside MEs)

  @property
  def num_frames(self) -> int:
    return sum(len(s.frames) for s in self.segments)


@dataclasses.dataclass(frozen=True)
class Plan:
  units: tuple[Unit, ...]
  annotations: tuple[tuple[str, str], ...]  # (source file, destination file)
  skipped: tuple[index_lib.Skipped, ...]


def _inside(path: str, root: str) -> bool:
  return os.path.commonpath([os.path.abspath(path), os.path.abspath(root)]) == os.path.abspath(root)


def _target(path: str, root: str, out_root: str, fallback: str) -> str:
  """`path` moved from `root` to `out_root`, or into `fallback` if it is outside `root`."""
  if _inside(path, root):
    return os.path.join(out_root, os.path.relpath(path, root))
  return os.path.join(fallback, os.path.basename(path))


def _folder_unit(name: str, folder: str, dst: str, records: list, video: bool) -> Unit:
  """The unit of one source folder holding the frames of `records` (sorted by onset)."""
  images, copies = [], []
  for entry in sorted(os.listdir(folder)):
    path = os.path.join(folder, entry)
    if os.path.isfile(path) and not entry.startswith("."):  # no hidden files (macOS '._x.jpg')
      (images if entry.lower().endswith(frames_lib.IMAGE_SUFFIXES) else copies).append(path)
  records = sorted(records, key=lambda r: r.onset)
  if not video:
    return Unit(name, folder, dst, (Segment(records[0].frame_paths[0], tuple(images)),),
                tuple(copies))
  groups = []  # [[onset, offset, reference], ...] of overlapping MEs merged
  for r in records:
    if groups and r.onset <= groups[-1][1]:
      groups[-1][1] = max(groups[-1][1], r.offset)
    else:
      groups.append([r.onset, r.offset, r.frame_paths[0]])
  numbered = [(frames_lib.frame_number(os.path.basename(p)), p) for p in images]
  segments = [Segment(ref, tuple(p for n, p in numbered if n is not None and lo <= n <= hi))
              for lo, hi, ref in groups]
  used = sum(len(s.frames) for s in segments)
  return Unit(name, folder, dst, tuple(segments), (), len(images) - used)


def _database_plan(name: str, root: str, out_root: str, top_root: str, top_out: str,
                   annotation: str | None) -> tuple[list[Unit], list, list]:
  module = importlib.import_module(f"cmnet_jax.datasets.{name}")
  records, skipped, _ = module.read_records(root, annotation=annotation)
  annotations = []
  if hasattr(module, "ANNOTATION_NAMES"):
    path = index_lib.find_annotation(root, annotation, module.ANNOTATION_NAMES, name)
    annotations.append((path, _target(path, top_root, top_out, out_root)))
  video = False
  if name == "casme3":
    frames_root = frames_lib.resolve_folder(root, None, module.FRAME_FOLDERS, name)
    video = os.path.basename(frames_root).lower() != "frame"
  by_folder: dict[str, list] = {}
  for r in records:
    by_folder.setdefault(os.path.dirname(r.frame_paths[0]), []).append(r)
  units = []
  for folder, group in sorted(by_folder.items()):
    if not _inside(folder, top_root):
      raise index_lib.DatasetError(f"{name}: clip folder {folder!r} is outside the root "
                                   f"{top_root!r}; the aligned copy keeps paths relative to it")
    label = f"{name} " + ", ".join(f"{r.subject}/{r.clip_id}" for r in group)
    units.append(_folder_unit(label, folder, _target(folder, top_root, top_out, out_root),
                              group, video))
  return units, annotations, [index_lib.Skipped(f"{name} {s.item}", s.reason) for s in skipped]


def make_plan(name: str, root: str, out_root: str, annotation: str | None = None) -> Plan:
  """Every unit and annotation copy of database `name` at `root`, aligned into `out_root`."""
  if name not in DATABASES:
    raise index_lib.DatasetError(f"--mode=align: data.name is {name!r}; expected a real "
                                 f"database, one of {DATABASES}")
  if not os.path.isdir(root):
    raise index_lib.DatasetError(f"{name}: root folder {root!r} does not exist (expected the "
                                 f"folder where the licensed database was unpacked)")
  if _inside(out_root, root) or _inside(root, out_root):
    raise index_lib.DatasetError(f"data.aligned_root {out_root!r} must lie outside data.root "
                                 f"{root!r} (and not contain it)")
  units, annotations, skipped = [], [], []
  if name != "megc2019":
    units, annotations, skipped = _database_plan(name, root, out_root, root, out_root, annotation)
  else:
    megc2019 = importlib.import_module("cmnet_jax.datasets.megc2019")
    csv = index_lib.find_annotation(root, annotation, megc2019.CSV_NAMES, name)
    annotations.append((csv, _target(csv, root, out_root, out_root)))
    for database in sorted({m[1] for m in megc2019.read_membership(csv)}):
      part = os.path.join(root, megc2019.PARTS[database])
      if not os.path.isdir(part):
        raise index_lib.DatasetError(f"{name}: {csv!r} lists {database} clips but the folder "
                                     f"{part!r} does not exist")
      part_out = os.path.join(out_root, megc2019.PARTS[database])
      more = _database_plan(database, part, part_out, root, out_root, None)
      units += more[0]
      annotations += [a for a in more[1] if a not in annotations]
      skipped += more[2]
  destinations = {os.path.abspath(u.dst) for u in units}
  for dst in sorted(destinations):
    parent = os.path.dirname(dst)
    while parent != os.path.dirname(parent):
      if parent in destinations:
        raise index_lib.DatasetError(f"{name}: clip folder {dst!r} lies inside clip folder "
                                     f"{parent!r}; cannot write them as separate clips")
      parent = os.path.dirname(parent)
  if not units:
    raise index_lib.DatasetError(f"{name}: no clips to align under {root!r} ({len(skipped)} "
                                 f"skipped: {[tuple(s) for s in skipped[:3]]})")
  return Plan(tuple(units), tuple(annotations), tuple(skipped))
