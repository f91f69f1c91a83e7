"""The clip index every database reader returns, LOSO folds, and helpers the readers share.

A reader turns a user's unpacked database (its real layout, see docs/datasets.md) into a
`DatasetIndex`: one `ClipRecord` per usable micro-expression, the class names, the items it
skipped with their reasons, and notes on quirks it repaired (printed once by `print_report`).
Fatal problems raise `DatasetError`, whose message names the path/row/key and what was expected.
The readers are found and dispatched by `registry.load_index`.
"""
import dataclasses
import fnmatch
import os
import sys
from typing import NamedTuple, Sequence, TextIO


class DatasetError(Exception):
  """A database tree or annotation file that cannot be read as the real layout."""


class Skipped(NamedTuple):
  """An annotation row, clip or folder left out of the index, and why (human-readable)."""
  item: str
  reason: str


class Fold(NamedTuple):
  """One leave-one-subject-out fold; ids are positions in `DatasetIndex.clips`."""
  test_subject: str
  train_ids: tuple[int, ...]
  test_ids: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class ClipRecord:
  """One micro-expression clip.

  `frame_paths` are the frame files onset..offset in temporal order (frames the database lacks
  are absent); `onset`, `apex` and `offset` are frame numbers as in the source files (absolute for
  SAMM, SMIC and CAS(ME)^3); `emotion` is as written in the source; `label` indexes
  `DatasetIndex.class_names` (-1 before a class scheme is applied).
  """
  dataset: str
  subject: str
  clip_id: str
  frame_paths: tuple[str, ...]
  onset: int
  apex: int
  offset: int
  emotion: str
  label: int
  action_units: str
  frame_numbers: tuple[int, ...] = ()

  @property
  def apex_index(self) -> int:
    """Position of the apex in `frame_paths` (the nearest frame present if the apex is missing)."""
    if not self.frame_numbers:
      return len(self.frame_paths) // 2
    return min(range(len(self.frame_numbers)),
               key=lambda i: (abs(self.frame_numbers[i] - self.apex), i))


@dataclasses.dataclass(frozen=True)
class DatasetIndex:
  """All usable clips of one database (or of the MEGC2019 composite) under one class scheme."""
  name: str
  root: str
  clips: tuple[ClipRecord, ...]
  class_names: tuple[str, ...]
  skipped: tuple[Skipped, ...] = ()
  notes: tuple[str, ...] = ()
  _printed: list = dataclasses.field(default_factory=list, repr=False, compare=False)

  @property
  def subjects(self) -> tuple[str, ...]:
    """Subjects that have clips, sorted."""
    return tuple(sorted({c.subject for c in self.clips}))

  def class_counts(self) -> dict[str, int]:
    """Number of clips per class name (every class listed, zeros included)."""
    counts = {name: 0 for name in self.class_names}
    for clip in self.clips:
      counts[self.class_names[clip.label]] += 1
    return counts

  def report(self) -> str:
    """Human-readable summary: counts, repaired quirks and skipped items with their reasons."""
    lines = [f"{self.name} at {self.root}: {len(self.clips)} clips, {len(self.subjects)} subjects, "
             f"classes {self.class_counts()}"]
    lines += [f"  repaired: {note}" for note in self.notes]
    lines += [f"  skipped {s.item}: {s.reason}" for s in self.skipped]
    return "\n".join(lines)

  def print_report(self, file: TextIO | None = None) -> bool:
    """Prints `report()` the first time it is called on this index; returns whether it printed."""
    if self._printed:
      return False
    self._printed.append(True)
    print(self.report(), file=file or sys.stdout)
    return True


def loso_folds(index: DatasetIndex) -> list[Fold]:
  """Leave-one-subject-out folds: one per subject that has clips, sorted by subject.

  >>> clip = lambda s: ClipRecord('x', s, 'c', ('f',), 0, 0, 0, 'e', 0, '')
  >>> idx = DatasetIndex('x', '/', (clip('b'), clip('a'), clip('b')), ('e',))
  >>> loso_folds(idx)[1]
  Fold(test_subject='b', train_ids=(1,), test_ids=(0, 2))
  """
  folds = []
  for subject in index.subjects:
    test = tuple(i for i, c in enumerate(index.clips) if c.subject == subject)
    train = tuple(i for i, c in enumerate(index.clips) if c.subject != subject)
    folds.append(Fold(subject, train, test))
  return folds


def find_annotation(root: str, annotation: str | os.PathLike | None, names: Sequence[str],
                    dataset: str) -> str:
  """The annotation file: `annotation` if given (relative to root), else the first known name.

  `names` may hold shell patterns ('CASME2-coding-*.xlsx'); names match case-insensitively, in
  `root` first, then in its parent.
  """
  if annotation:
    path = os.path.join(root, os.fspath(annotation))
    if not os.path.isfile(path):
      what = "is not a file" if os.path.exists(path) else "does not exist"
      raise DatasetError(f"{dataset}: annotation file {path!r} {what} (expected the annotation "
                         f"spreadsheet or CSV, e.g. {names[0]})")
    return path
  for folder in (root, os.path.dirname(os.path.abspath(root))):
    entries = sorted(os.listdir(folder), reverse=True)  # newest dated release first
    for name in names:
      hits = [e for e in entries if fnmatch.fnmatch(e.lower(), name.lower())]
      if hits and os.path.isfile(os.path.join(folder, hits[0])):
        return os.path.join(folder, hits[0])
  raise DatasetError(f"{dataset}: no annotation file in {root!r} (or its parent); looked for "
                     f"{', '.join(names)}; pass annotation= to name it")


def make_index(name: str, root: str, class_names: Sequence[str], clips: Sequence[ClipRecord],
               skipped: Sequence[Skipped], notes: Sequence[str]) -> DatasetIndex:
  """Builds the index, refusing an empty one (almost always a wrong root or frames folder), and
  clip names the outputs cannot hold: white space in a subject or clip id (predictions.txt
  separates its fields by spaces) or one (database, subject, clip id) twice."""
  if not clips:
    raise DatasetError(f"{name}: no usable clips under {root!r} ({len(skipped)} skipped: "
                       f"{[tuple(s) for s in skipped[:3]]}...); check the root and frames folder")
  seen = {}
  for c in clips:
    where = os.path.dirname(c.frame_paths[0]) if c.frame_paths else root
    if any(not text or text.split() != [text] for text in (c.subject, c.clip_id)):
      raise DatasetError(f"{c.dataset}: clip {c.subject!r}/{c.clip_id!r} (frames in {where!r}): "
                         f"expected a subject and clip id without white space (they are written "
                         f"to predictions.txt, whose fields are space-separated); rename it")
    key = (c.dataset, c.subject, c.clip_id)
    if key in seen:
      raise DatasetError(f"{c.dataset}: clip {c.subject}/{c.clip_id} is found twice, in "
                         f"{seen[key]!r} and {where!r}; expected each clip once (remove one)")
    seen[key] = where
  return DatasetIndex(name, root, tuple(clips), tuple(class_names), tuple(skipped), tuple(notes))
