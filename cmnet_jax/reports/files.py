"""Text outputs of a run: `results.json`, `per_subject.csv`, `predictions.txt` (MEGC log format).

Every file is written atomically (`atomic_write`: a temporary file in the same folder, fsync,
then `os.replace`), so an interrupted run leaves either the old file or the new one, never half.
Inputs are plain NumPy arrays / lists / dicts gathered on the host.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from cmnet_jax import metrics
from cmnet_jax import storage

FINAL_EPOCH_LABEL = ("final-epoch model of every fold, evaluated once on its held-out subject "
                     "(no test-set selection)")
ORACLE_LABEL = ("ORACLE best epoch: per fold, the epoch that scored best on its own held-out "
                "subject (test-set selection, as in much published MER code); for comparison "
                "with papers only, never a result")


def umask() -> int:
  """The process's umask, read without changing it (/proc), else by setting it back at once."""
  try:
    with open("/proc/self/status", encoding="ascii") as f:
      for line in f:
        if line.startswith("Umask:"):
          return int(line.split()[1], 8)
  except (OSError, ValueError):
    pass
  mask = os.umask(0o022)
  os.umask(mask)
  return mask


def atomic_write(path: str | os.PathLike, data: str | bytes) -> Path:
  """Writes `data` to `path` so that readers see the old or the new file, never a partial one.

  The file gets the mode `open()` would give it (0o666 less the umask). On object storage
  (`gs://...`, see `cmnet_jax.storage`) it is one upload, which readers see whole or not at all.

  >>> d = tempfile.mkdtemp()
  >>> p = atomic_write(os.path.join(d, 'a.txt'), 'hi\\n')
  >>> p.read_text(), sorted(os.listdir(d))
  ('hi\\n', ['a.txt'])
  """
  raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
  if storage.is_remote(path):
    path = storage.as_path(path)
    storage.write_bytes(path, raw)
    return path
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(raw)
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp, 0o666 & ~umask())  # mkstemp's 0o600, widened as open() would make it
    os.replace(tmp, path)
  except BaseException as e:
    if os.path.exists(tmp):
      os.unlink(tmp)
    if isinstance(e, OSError) and e.errno and not isinstance(e, FileNotFoundError):
      raise OSError(e.errno, e.strerror, str(path)) from e  # name the file, not the temporary
    raise
  return path


def to_jsonable(x: Any) -> Any:
  """NumPy arrays/scalars -> lists/numbers, tuples -> lists, non-finite floats -> None (null).

  >>> to_jsonable({'a': np.array([1.5, np.nan]), 'b': (np.int64(2),)})
  {'a': [1.5, None], 'b': [2]}
  """
  if isinstance(x, Mapping):
    return {str(k): to_jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [to_jsonable(v) for v in x]
  if isinstance(x, np.ndarray):
    return to_jsonable(x.tolist())
  if isinstance(x, np.generic):
    return to_jsonable(x.item())
  if isinstance(x, float) and not math.isfinite(x):
    return None
  if x is None or isinstance(x, (bool, int, float, str)):
    return x
  raise TypeError(f"cannot write {type(x).__name__} to results.json: {x!r:.80}")


def write_results_json(path: str | os.PathLike, headline: Mapping[str, Any], *,
                       extra: Mapping[str, Any] | None = None,
                       oracle_best_epoch: Mapping[str, Any] | None = None) -> Path:
  """Writes `results.json`: `{"headline": ..., **extra, "oracle_best_epoch": ...}`.

  The headline (final-epoch metrics, e.g. `metrics.summarize(...)` plus per-database figures) is
  stamped with `selection` = FINAL_EPOCH_LABEL; the optional oracle block is always stamped with
  `label` = ORACLE_LABEL by this function, so it cannot be written unlabelled.
  """
  extra = dict(extra or {})
  for key in ("headline", "oracle_best_epoch"):
    if key in extra:
      raise ValueError(f"results.json: extra may not hold the reserved key {key!r}")
  if "selection" in headline:
    raise ValueError("results.json: headline may not hold 'selection' (set by the writer)")
  out = {"headline": {"selection": FINAL_EPOCH_LABEL, **headline}, **extra}
  if oracle_best_epoch is not None:
    out["oracle_best_epoch"] = {"label": ORACLE_LABEL, **oracle_best_epoch}
  return atomic_write(path, json.dumps(to_jsonable(out), indent=2, allow_nan=False) + "\n")


def _check_rows(where: str, **columns: Sequence[Any]) -> int:
  lengths = {k: len(v) for k, v in columns.items()}
  if len(set(lengths.values())) != 1:
    raise ValueError(f"{where}: columns differ in length: {lengths}")
  return next(iter(lengths.values()))


def write_per_subject_csv(path: str | os.PathLike, labels: Any, predictions: Any,
                          subjects: Sequence[Any], num_classes: int, *,
                          databases: Sequence[str] | None = None,
                          class_names: Sequence[str] | None = None) -> Path:
  """One row per held-out subject (fold): counts, accuracy, UF1, UAR, support per class.

  Columns: `database, subject, num_samples, correct, accuracy, uf1, uar, support_<class>...`.
  UF1/UAR of a subject follow `cmnet_jax.metrics`' empty-class rule (means over all C classes),
  so they are low for subjects that lack classes: read them with the support columns.
  """
  labels, predictions = np.asarray(labels), np.asarray(predictions)
  n = _check_rows("per_subject.csv", labels=labels, predictions=predictions, subjects=subjects,
                  **({"databases": databases} if databases is not None else {}))
  names = list(class_names) if class_names is not None else [str(c) for c in range(num_classes)]
  if len(names) != num_classes:
    raise ValueError(f"per_subject.csv: {len(names)} class names for {num_classes} classes")
  dbs = list(databases) if databases is not None else [""] * n
  keys = list(zip(dbs, subjects))
  rows = metrics.per_group(labels, predictions, keys, num_classes)
  hits: dict[tuple, int] = {}
  for key, hit in zip(keys, (labels == predictions).tolist()):
    hits[key] = hits.get(key, 0) + int(hit)
  buf = io.StringIO()
  w = csv.writer(buf, lineterminator="\n")
  w.writerow(["database", "subject", "num_samples", "correct", "accuracy", "uf1", "uar"]
             + [f"support_{c}" for c in names])
  for (db, subject), s in rows.items():
    w.writerow([db, subject, s["num_samples"], hits[(db, subject)], f"{s['accuracy']:.6f}",
                f"{s['uf1']:.6f}", f"{s['uar']:.6f}"] + [int(v) for v in s["support"]])
  return atomic_write(path, buf.getvalue())


def _token(where: str, value: Any) -> str:
  text = str(value)
  if not text or any(ch.isspace() for ch in text):
    raise ValueError(f"{where}: {text!r} is empty or holds whitespace (the MEGC log is "
                     "space-separated)")
  return text


def write_predictions_txt(path: str | os.PathLike, databases: Sequence[str],
                          subjects: Sequence[Any], filenames: Sequence[str], labels: Any,
                          predictions: Any) -> Path:
  """MEGC log: per fold a line `<db> <subject>`, then one `<filename> <gt> <pred>` line per clip.

  Folds (distinct `(database, subject)`) appear in order of first appearance, their clips in
  input order.

  >>> d = tempfile.mkdtemp()
  >>> p = write_predictions_txt(os.path.join(d, 'p.txt'), ['smic'] * 2, ['s01', 's01'],
  ...                           ['s01_ne_01', 's01_po_02'], [0, 1], [0, 2])
  >>> print(p.read_text(), end='')
  smic s01
  s01_ne_01 0 0
  s01_po_02 1 2
  """
  labels, predictions = np.asarray(labels), np.asarray(predictions)
  n = _check_rows("predictions.txt", databases=databases, subjects=subjects, filenames=filenames,
                  labels=labels, predictions=predictions)
  folds: dict[tuple[str, str], list[str]] = {}
  for i in range(n):
    key = (_token(f"predictions.txt row {i} database", databases[i]),
           _token(f"predictions.txt row {i} subject", subjects[i]))
    line = (f"{_token(f'predictions.txt row {i} filename', filenames[i])} "
            f"{int(labels[i])} {int(predictions[i])}")
    folds.setdefault(key, []).append(line)
  text = "".join(f"{db} {sub}\n" + "".join(l + "\n" for l in lines)
                 for (db, sub), lines in folds.items())
  return atomic_write(path, text)

