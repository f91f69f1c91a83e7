"""The clip index every database reader returns, LOSO folds, and `load_index` dispatch.

A reader turns a user's unpacked database (its real layout, see docs/DATASETS.md) into a
`DatasetIndex`: one `ClipRecord` per usable micro-expression, the class names, the items it
skipped with their reasons, and notes on quirks it repaired (printed once by `print_report`).
Fatal problems raise `DatasetError`, whose message names the path/row/key and what was expected.
"""
import dataclasses
import fnmatch
import importlib
import os
import sys
from typing import Any, Iterable, Mapping, NamedTuple, Sequence, TextIO

DATABASES = ("casme2", "samm", "smic", "casme3", "megc2019")


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


def load_index(name: str, root: str | os.PathLike, *, classes: str | None = None,
               annotation: str | os.PathLike | None = None, **subpaths: Any) -> DatasetIndex:
  """Indexes a database the user unpacked at `root`, in its real layout.

  Args:
    name: 'casme2', 'samm', 'smic', 'casme3' or 'megc2019'.
    root: the folder the user unpacked (e.g. the one holding `Cropped/` and the coding xlsx).
    classes: class scheme ('5class', '3class', ... see each reader); None or '' = the default.
    annotation: the annotation file; None or '' = found under `root` by its known names.
    **subpaths: reader-specific folder overrides (e.g. `frames=` or, for 'megc2019', `casme2=`,
      `samm=`, `smic=`), relative to `root` or absolute.

  Returns:
    The `DatasetIndex`; call `.print_report()` to show what was skipped or repaired.
  """
  if name not in DATABASES:
    raise DatasetError(f"unknown database {name!r}: expected one of {DATABASES}")
  root = os.fspath(root)
  if not os.path.isdir(root):
    raise DatasetError(f"{name}: root folder {root!r} does not exist (expected the folder where "
                       f"the licensed database was unpacked)")
  module = importlib.import_module(f"{__package__}.{name}")
  return module.load(root, classes=classes or None, annotation=annotation or None, **subpaths)


def find_annotation(root: str, annotation: str | os.PathLike | None, names: Sequence[str],
                    dataset: str) -> str:
  """The annotation file: `annotation` if given (relative to root), else the first known name.

  `names` may hold shell patterns ('CASME2-coding-*.xlsx'); names match case-insensitively, in
  `root` first, then in its parent.
  """
  if annotation:
    path = os.path.join(root, os.fspath(annotation))
    if not os.path.isfile(path):
      raise DatasetError(f"{dataset}: annotation file {path!r} does not exist")
    return path
  for folder in (root, os.path.dirname(os.path.abspath(root))):
    entries = sorted(os.listdir(folder), reverse=True)  # newest dated release first
    for name in names:
      hits = [e for e in entries if fnmatch.fnmatch(e.lower(), name.lower())]
      if hits and os.path.isfile(os.path.join(folder, hits[0])):
        return os.path.join(folder, hits[0])
  raise DatasetError(f"{dataset}: no annotation file in {root!r} (or its parent); looked for "
                     f"{', '.join(names)}; pass annotation= to name it")


def apply_scheme(records: Iterable[ClipRecord], schemes: Mapping[str, Sequence[tuple[str, tuple]]],
                 classes: str | None, default: str, vocabulary: Iterable[str],
                 dataset: str) -> tuple[tuple[str, ...], list[ClipRecord], list[Skipped]]:
  """Labels records by a class scheme: [(class name, emotions (lower case)), ...] in label order.

  Emotions are compared case-insensitively. An emotion outside `vocabulary` is an error (a typo
  or a different release); a known emotion outside the scheme is skipped with its reason.
  """
  classes = classes or default
  if classes not in schemes:
    raise DatasetError(f"{dataset}: unknown class scheme {classes!r}; expected one of "
                       f"{tuple(schemes)}")
  scheme = schemes[classes]
  to_label = {e: i for i, (_, emotions) in enumerate(scheme) for e in emotions}
  vocabulary = {v.lower() for v in vocabulary}
  kept, skipped = [], []
  for r in records:
    emotion = r.emotion.strip().lower()
    if emotion not in vocabulary:
      raise DatasetError(f"{dataset}: clip {r.subject}/{r.clip_id} has unknown emotion "
                         f"{r.emotion!r}; expected one of {sorted(vocabulary)}")
    if emotion in to_label:
      kept.append(dataclasses.replace(r, label=to_label[emotion]))
    else:
      skipped.append(Skipped(f"{r.subject}/{r.clip_id}",
                             f"emotion {r.emotion!r} is not in the {classes} scheme"))
  return tuple(name for name, _ in scheme), kept, skipped


def labelled_index(name: str, root: str, read: tuple[list[ClipRecord], list[Skipped], list[str]],
                   schemes: Mapping[str, Sequence[tuple[str, tuple]]], classes: str | None,
                   default: str, vocabulary: Iterable[str]) -> DatasetIndex:
  """A reader's `(records, skipped, notes)` labelled by a class scheme (`apply_scheme`) and indexed
  (`make_index`); clips outside the scheme join the skipped items with their reason."""
  records, skipped, notes = read
  names, kept, dropped = apply_scheme(records, schemes, classes, default, vocabulary, name)
  return make_index(name, root, names, kept, list(skipped) + dropped, notes)


def make_index(name: str, root: str, class_names: Sequence[str], clips: Sequence[ClipRecord],
               skipped: Sequence[Skipped], notes: Sequence[str]) -> DatasetIndex:
  """Builds the index, refusing an empty one (almost always a wrong root or frames folder)."""
  if not clips:
    raise DatasetError(f"{name}: no usable clips under {root!r} ({len(skipped)} skipped: "
                       f"{[tuple(s) for s in skipped[:3]]}...); check the root and frames folder")
  return DatasetIndex(name, root, tuple(clips), tuple(class_names), tuple(skipped), tuple(notes))
