"""Writing annotation sheets in a database's real file format (the synthetic generator's output).

The synthetic set is a CASME II tree, so it needs the CASME II coding workbook written exactly
as the owners ship it (sheet, header row, cell types and quirks; docs/datasets.md). The test
fixtures in `cmnet_jax.testing.fake_trees` build their fake trees on these writers.
"""
import os
from typing import Any, Iterable, Mapping, Sequence

import openpyxl

PathLike = str | os.PathLike

CASME2_HEADER = ("Subject", "Filename", None, "OnsetFrame", "ApexFrame", "OffsetFrame", None,
                 "Action Units", "Estimated Emotion")


def excel_au(value: Any) -> Any:
  """Action Units as Excel holds them: a plain number is an int cell, anything else text.

  >>> excel_au('12'), excel_au('4+7')
  (12, '4+7')
  """
  if isinstance(value, str) and value.strip().isdigit():
    return int(value.strip())
  return value


def padded_text(subject: Any, width: int) -> str:
  """'1', 1 or 'sub01' -> zero-padded text such as '01' (the real sheets store text cells).

  >>> padded_text(1, 2), padded_text('sub7', 3), padded_text('x', 2)
  ('01', '007', 'x')
  """
  text = str(subject).strip()
  if text.lower().startswith("sub"):
    text = text[3:]
  return text.zfill(width) if text.isdigit() else text


def write_sheet(path: PathLike, sheet: str, table: Iterable[Sequence[Any]]) -> str:
  """Writes a one-sheet workbook, cell types as given (str stays text, int stays a number)."""
  os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
  book = openpyxl.Workbook()
  ws = book.active
  ws.title = sheet
  for values in table:
    ws.append(list(values))
  book.save(os.fspath(path))
  return os.fspath(path)


def write_casme2_coding(path: PathLike, rows: Sequence[Mapping[str, Any]], *,
                        objective_class: bool = True) -> str:
  """Writes a CASME II coding workbook exactly like `CASME2-coding-20190701.xlsx`.

  Sheet `Sheet1`, header on row 1:
  `Subject | Filename | <empty> | OnsetFrame | ApexFrame | OffsetFrame | <empty> |
  Action Units | Estimated Emotion [| Objective Classes]`.
  `Subject` is written as zero-padded *text* ('01'), the apex may be the string '/', and
  `Action Units` holds an int cell for a single AU (4) and text otherwise ('4+7+L10').

  Args:
    path: the .xlsx file to write (parent folders are created).
    rows: dicts with keys subject (int or text, e.g. 1, '01', 'sub01'), filename, onset, apex
      (int or '/'), offset, action_units, emotion and, if `objective_class`, objective_class.
    objective_class: whether to write the optional last column `Objective Classes`.

  Returns:
    The path written, as a string.

  >>> import tempfile, os, openpyxl
  >>> p = os.path.join(tempfile.mkdtemp(), 'CASME2-coding-20190701.xlsx')
  >>> _ = write_casme2_coding(p, [dict(subject=1, filename='EP02_01f', onset=46, apex='/',
  ...     offset=86, action_units='12', emotion='happiness', objective_class=1)])
  >>> [c.value for c in openpyxl.load_workbook(p)['Sheet1'][2]]
  ['01', 'EP02_01f', None, 46, '/', 86, None, 12, 'happiness', 1]
  """
  header = CASME2_HEADER + (("Objective Classes",) if objective_class else ())
  body = []
  for i, row in enumerate(rows):
    try:
      values = [padded_text(row["subject"], 2), row["filename"], None, row["onset"], row["apex"],
                row["offset"], None, excel_au(row["action_units"]), row["emotion"]]
      if objective_class:
        values.append(row["objective_class"])
    except KeyError as e:
      raise KeyError(f"write_casme2_coding: row {i} lacks key {e}") from None
    body.append(values)
  return write_sheet(path, "Sheet1", [list(header)] + body)
