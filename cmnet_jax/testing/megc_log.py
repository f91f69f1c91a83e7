"""Reads back the MEGC log format that `reports.write_predictions_txt` writes (tests only).

Per fold a line `<database> <subject>`, then one `<filename> <true class> <predicted class>`
line per clip (docs/datasets.md, "The MEGC log format").

>>> import os, tempfile
>>> p = os.path.join(tempfile.mkdtemp(), 'predictions.txt')
>>> _ = open(p, 'w').write('smic s01\\ns01_ne_01 0 2\\n')
>>> read_predictions_txt(p)['prediction']
[2]
"""
import os
from pathlib import Path


def read_predictions_txt(path: str | os.PathLike) -> dict[str, list]:
  """Parses a MEGC log back into columns `database, subject, filename, label, prediction`."""
  out: dict[str, list] = {k: [] for k in ("database", "subject", "filename", "label",
                                          "prediction")}
  fold = None
  for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
    tokens = line.split()
    if len(tokens) == 2:
      fold = tokens
    elif len(tokens) == 3 and fold is not None:
      try:
        gt, pred = int(tokens[1]), int(tokens[2])
      except ValueError:
        raise ValueError(f"{path} line {number}: expected '<filename> <gt> <pred>' with integer "
                         f"classes, got {line!r}") from None
      for k, v in zip(out, fold + [tokens[0], gt, pred]):
        out[k].append(v)
    elif tokens:
      raise ValueError(f"{path} line {number}: expected '<db> <subject>' or "
                       f"'<filename> <gt> <pred>' (after a fold line), got {line!r}")
  return out
