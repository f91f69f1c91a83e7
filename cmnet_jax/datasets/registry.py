"""The databases, each declared once in its own reader module, and `load_index` dispatch.

A reader module of this package (e.g. `casme2.py`) declares its database at top level:

    DATABASE = registry.DatabaseInfo(name='casme2', title='CASME II', schemes=SCHEMES,
                                     default_classes='5class', emotions=EMOTIONS,
                                     request='...', layout=('Cropped/sub01/...', ...))

and defines either `read_records(root, *, annotation=None, **folders)` (unlabelled records, then
labelled here by the declared class schemes) or, for a reader that labels its clips itself,
`load(root, *, classes=None, annotation=None, **folders)`. Everything else derives from the
declarations: the list of databases and `load_index`, the missing-data message (`describe`, shown
by `run.py` when a database is not found) and the TFDS builders (`cmnet_jax.datasets.tfds`).
Adding a database is its reader module, its config, its fake-tree writer and its test.

>>> [name for name in databases() if name in ('casme2', 'samm', 'smic', 'casme3', 'megc2019')]
['casme2', 'casme3', 'megc2019', 'samm', 'smic']
>>> get('smic').class_names()
('negative', 'positive', 'surprise')
"""
import dataclasses
import functools
import importlib
import importlib.util
import os
import pkgutil
import re
from typing import Any, Iterable, Mapping, Sequence

from cmnet_jax.datasets import index as index_lib

# Class name -> the source labels (emotions as written, lower case) it gathers, in label order.
Scheme = Sequence[tuple[str, tuple[str, ...]]]
_DECLARES = re.compile(r"^DATABASE\s*[:=]", re.MULTILINE)


@dataclasses.dataclass(frozen=True)
class DatabaseInfo:
  """What a database is, where to request it, how it is laid out and how it is labelled.

  Attributes:
    name: the config's `data.name`, the clips' `dataset`, and the TFDS name `cmnet_<name>`.
    title: human-readable name, e.g. 'CASME II'.
    schemes: class scheme name -> [(class name, source labels), ...] in label order; a source
      label is an emotion as the annotation writes it, lower case (for the MEGC2019 composite,
      the CSV's class code).
    default_classes: the scheme used when `data.classes` is ''.
    emotions: every label the source may write; any other is an error (a typo, another release).
    request: whom to request the database from, and how (it is licence-restricted).
    layout: what the unpacked folder holds, one entry per item relative to the root, with its
      known alternatives in parentheses.
  """
  name: str
  title: str
  schemes: Mapping[str, Scheme]
  default_classes: str
  emotions: tuple[str, ...]
  request: str
  layout: tuple[str, ...]

  def __post_init__(self):
    if self.default_classes not in self.schemes:
      raise ValueError(f"database {self.name!r}: default_classes {self.default_classes!r} is "
                       f"not among its schemes {tuple(self.schemes)}")

  def class_names(self, classes: str | None = None) -> tuple[str, ...]:
    """Class names of a scheme (None or '' = the default), in label order."""
    return tuple(name for name, _ in self.scheme(classes))

  def scheme(self, classes: str | None = None) -> Scheme:
    """The scheme's [(class name, source labels), ...]; DatasetError if it is unknown."""
    classes = classes or self.default_classes
    if classes not in self.schemes:
      raise index_lib.DatasetError(f"{self.name}: unknown class scheme {classes!r}; expected "
                                   f"one of {tuple(self.schemes)}")
    return self.schemes[classes]

  def describe(self) -> str:
    """A paragraph: what the database is, where to request it, and how to lay it out."""
    items = [f"<root>/{entry}" for entry in self.layout]
    where = items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
    return (f"{self.title[:1].upper()}{self.title[1:]} is licence-restricted: request it from "
            f"{self.request}. "
            f"Unpack it so that it looks like {where}.")


def _declares(module: pkgutil.ModuleInfo) -> bool:
  """Whether the module's (or package's `__init__`) source assigns `DATABASE` at top level."""
  spec = importlib.util.find_spec(f"{__package__}.{module.name}")
  if spec is None or not spec.origin or not spec.origin.endswith(".py"):
    return False
  with open(spec.origin, encoding="utf-8") as f:
    return bool(_DECLARES.search(f.read()))


@functools.cache
def _readers() -> dict[str, Any]:
  """Database name -> its reader module, sorted by name (readers are imported here, once)."""
  package = importlib.import_module(__package__)
  found = {}
  for module in pkgutil.iter_modules(package.__path__):
    if module.name.startswith("_") or not _declares(module):
      continue
    reader = importlib.import_module(f"{__package__}.{module.name}")
    info = getattr(reader, "DATABASE", None)
    if not isinstance(info, DatabaseInfo):
      raise TypeError(f"{reader.__name__}.DATABASE: expected a registry.DatabaseInfo, got "
                      f"{type(info).__name__}")
    if info.name in found:
      raise ValueError(f"database {info.name!r} is declared by both {found[info.name].__name__} "
                       f"and {reader.__name__}")
    if not (hasattr(reader, "load") or hasattr(reader, "read_records")):
      raise TypeError(f"{reader.__name__} declares DATABASE but defines neither load() nor "
                      f"read_records()")
    found[info.name] = reader
  return dict(sorted(found.items()))


def databases() -> dict[str, DatabaseInfo]:
  """Every declared database by name, sorted by name."""
  return {name: reader.DATABASE for name, reader in _readers().items()}


def get(name: str) -> DatabaseInfo:
  """The declaration of database `name`; DatasetError naming the known ones if there is none."""
  readers = _readers()
  if name not in readers:
    raise index_lib.DatasetError(f"unknown database {name!r}: expected one of {tuple(readers)}")
  return readers[name].DATABASE


def describe(name: str) -> str:
  """`get(name).describe()`: where to request the database and how to lay it out."""
  return get(name).describe()


def load_index(name: str, root: str | os.PathLike, *, classes: str | None = None,
               annotation: str | os.PathLike | None = None,
               **subpaths: Any) -> index_lib.DatasetIndex:
  """Indexes a database the user unpacked at `root`, in its real layout.

  Args:
    name: a declared database ('casme2', 'samm', 'smic', 'casme3', 'megc2019').
    root: the folder the user unpacked (e.g. the one holding `Cropped/` and the coding xlsx).
    classes: class scheme ('5class', '3class', ... see `get(name).schemes`); None or '' = the
      database's default.
    annotation: the annotation file; None or '' = found under `root` by its known names.
    **subpaths: reader-specific folder overrides (e.g. `frames=` or, for 'megc2019', `casme2=`,
      `samm=`, `smic=`), relative to `root` or absolute.

  Returns:
    The `DatasetIndex`; call `.print_report()` to show what was skipped or repaired.
  """
  info = get(name)
  root = os.fspath(root)
  if not os.path.isdir(root):
    raise index_lib.DatasetError(f"{name}: root folder {root!r} does not exist (expected the "
                                 f"folder where the licensed database was unpacked)")
  reader = _readers()[name]
  if hasattr(reader, "load"):
    return reader.load(root, classes=classes or None, annotation=annotation or None, **subpaths)
  read = reader.read_records(root, annotation=annotation or None, **subpaths)
  return labelled_index(info, root, read, classes or None)


def apply_scheme(info: DatabaseInfo, records: Iterable[index_lib.ClipRecord],
                 classes: str | None
                 ) -> tuple[tuple[str, ...], list[index_lib.ClipRecord], list[index_lib.Skipped]]:
  """Labels records by one of the database's class schemes: (class names, kept, skipped).

  Emotions are compared case-insensitively. An emotion outside `info.emotions` is an error (a
  typo or a different release); a known emotion outside the scheme is skipped with its reason.
  """
  scheme = info.scheme(classes)
  to_label = {e: i for i, (_, emotions) in enumerate(scheme) for e in emotions}
  vocabulary = {v.lower() for v in info.emotions}
  kept, skipped = [], []
  for r in records:
    emotion = r.emotion.strip().lower()
    if emotion not in vocabulary:
      raise index_lib.DatasetError(f"{info.name}: clip {r.subject}/{r.clip_id} has unknown "
                                   f"emotion {r.emotion!r}; expected one of {sorted(vocabulary)}")
    if emotion in to_label:
      kept.append(dataclasses.replace(r, label=to_label[emotion]))
    else:
      skipped.append(index_lib.Skipped(
          f"{r.subject}/{r.clip_id}",
          f"emotion {r.emotion!r} is not in the {classes or info.default_classes} scheme"))
  return tuple(name for name, _ in scheme), kept, skipped


def labelled_index(info: DatabaseInfo, root: str,
                   read: tuple[Sequence[index_lib.ClipRecord], Sequence[index_lib.Skipped],
                               Sequence[str]],
                   classes: str | None) -> index_lib.DatasetIndex:
  """A reader's `(records, skipped, notes)` labelled by a class scheme (`apply_scheme`) and
  indexed (`index.make_index`); clips outside the scheme join the skipped items with their reason.
  """
  records, skipped, notes = read
  names, kept, dropped = apply_scheme(info, records, classes)
  return index_lib.make_index(info.name, root, names, kept, list(skipped) + dropped, notes)
