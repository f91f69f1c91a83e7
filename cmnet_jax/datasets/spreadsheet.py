"""Reading annotation tables (.xlsx with openpyxl, or .csv) the way the real files are laid out.

The real sheets have preamble rows, blank header cells, formulas, numbers stored as text and text
stored as numbers. `read_table` finds the header row by its first cell, checks the columns, and
returns each data row as a `Row` (its 1-based row number in the file plus cells by header name).
"""
import csv
import io
import os
import zipfile
from typing import Any, NamedTuple, Sequence

import openpyxl

from cmnet_jax.datasets.index import DatasetError


class Row(NamedTuple):
  """One data row: `number` is the row number as a spreadsheet program shows it (1-based)."""
  number: int
  cells: dict[str, Any]


def _header_key(value: Any) -> str:
  return " ".join(str(value).split()).lower() if value is not None else ""


def read_csv(path: str) -> list[list[str]]:
  """The rows of a CSV file as a spreadsheet program saves it: UTF-8 (with or without a BOM) or
  UTF-16 with a BOM (Excel's "Unicode Text"); separated by commas, semicolons (Excel where the
  decimal mark is a comma) or tabs, whichever the first lines use most. Any other encoding is a
  DatasetError naming the line and how to save the file as UTF-8.

  >>> import tempfile, os
  >>> p = os.path.join(tempfile.mkdtemp(), 't.csv')
  >>> _ = open(p, 'w', encoding='utf-16').write('Subject\\tOnset\\n01\\t5\\n')
  >>> read_csv(p)
  [['Subject', 'Onset'], ['01', '5']]
  """
  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    raise DatasetError(f"cannot read CSV file {path!r}: {e}") from e
  try:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
      text = data.decode("utf-16")
    else:
      text = data.decode("utf-8-sig")
  except UnicodeDecodeError as e:
    line = data[:e.start].count(b"\n") + 1
    raise DatasetError(
        f"CSV file {path!r} is not UTF-8 text (byte {data[e.start]:#04x} on line {line}: saved in "
        f"another character set, e.g. GBK or Windows-1252); save it as UTF-8: in Excel "
        f"'Save As' > 'CSV UTF-8 (Comma delimited)', in LibreOffice character set "
        f"'Unicode (UTF-8)'") from None
  sample = text[:4096]
  delimiter = max((",", ";", "\t"), key=lambda d: (sample.count(d), d == ","))
  try:
    return list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
  except csv.Error as e:
    raise DatasetError(f"cannot read CSV file {path!r}: {e}") from e


def _raw_rows(path: str, sheet: str | None, *, formulas: bool = False) -> list[tuple]:
  """Every row's cell values (`formulas`: an .xlsx formula cell's text, e.g. '=D2+1', instead of
  the value the program that saved the file computed)."""
  if path.lower().endswith(".csv"):
    return [tuple(r) for r in read_csv(path)]
  try:
    book = openpyxl.load_workbook(path, read_only=True, data_only=not formulas)
  except (OSError, zipfile.BadZipFile, KeyError, ValueError) as e:
    raise DatasetError(f"cannot read spreadsheet {path!r} ({type(e).__name__}: {e}); expected an "
                       f".xlsx workbook") from e
  try:
    if sheet is None:
      ws = book.worksheets[0]
    else:
      names = {n.lower(): n for n in book.sheetnames}
      if sheet.lower() not in names and len(book.sheetnames) == 1:
        names[sheet.lower()] = book.sheetnames[0]  # a release that renamed its only sheet
      if sheet.lower() not in names:
        raise DatasetError(f"spreadsheet {path!r} has no sheet {sheet!r}; its sheets are "
                           f"{book.sheetnames}")
      ws = book[names[sheet.lower()]]
    return [tuple(r) for r in ws.iter_rows(values_only=True)]
  finally:
    book.close()


def column_letter(position: int) -> str:
  """The spreadsheet letter of a 1-based column position.

  >>> [column_letter(n) for n in (1, 5, 26, 27, 703)]
  ['A', 'E', 'Z', 'AA', 'AAA']
  """
  letters = ""
  while position > 0:
    position, rest = divmod(position - 1, 26)
    letters = chr(ord("A") + rest) + letters
  return letters


def _refuse_repeated_columns(header: Sequence[Any], required: Sequence[str], where: str,
                             row_number: int) -> None:
  """A DatasetError if a column the reader uses is headed twice (which one holds the data cannot
  be known: a dict of cells would keep the last one silently), naming both columns."""
  wanted = {_header_key(c) for c in required}
  positions: dict[str, list[int]] = {}
  for i, value in enumerate(header, start=1):
    if _header_key(value) in wanted:
      positions.setdefault(_header_key(value), []).append(i)
  for key, found in positions.items():
    if len(found) > 1:
      columns = " and ".join(f"{column_letter(i)} (column {i})" for i in found)
      raise DatasetError(f"{where}: header on row {row_number} has the column "
                         f"{header[found[0] - 1]!r} {len(found)} times, in {columns}; expected it "
                         f"once (delete or rename all but the one that holds the data)")


def read_table(path: str | os.PathLike, *, sheet: str | None, required: Sequence[str],
               first_cell: str = "Subject", max_preamble: int = 40) -> list[Row]:
  """Reads a table whose header row starts with `first_cell`, after any preamble rows.

  Header names are matched case-insensitively with whitespace collapsed; blank header cells
  (the unnamed columns of CASME II) are ignored; fully blank data rows are dropped.

  Args:
    path: .xlsx (sheet `sheet`, or the first sheet if None) or .csv file.
    sheet: sheet name (case-insensitive); ignored for .csv.
    required: column names that must be present.
    first_cell: text of the header row's first non-blank cell (blank columns before it, such
      as the unnamed index column pandas' `to_excel` writes, are ignored).
    max_preamble: how many rows to search for the header.

  Returns:
    Data rows after the header, cells keyed by the header text as written.

  >>> import tempfile, os
  >>> p = os.path.join(tempfile.mkdtemp(), 't.csv')
  >>> _ = open(p, 'w').write('note\\nSubject,,Onset\\n01,,5\\n,,\\n')
  >>> read_table(p, sheet=None, required=['onset'])
  [Row(number=3, cells={'Subject': '01', 'Onset': '5'})]
  """
  path = os.fspath(path)
  rows = _raw_rows(path, sheet)
  where = f"{path!r}" + (f" sheet {sheet!r}" if sheet and not path.lower().endswith(".csv") else "")
  for h, values in enumerate(rows[:max_preamble]):
    filled = [v for v in values if _header_key(v)]   # blank leading cells: a pandas index
    if filled and _header_key(filled[0]) == _header_key(first_cell):
      break
  else:
    raise DatasetError(f"{where}: no header row whose first cell is {first_cell!r} in the first "
                       f"{max_preamble} rows; expected columns {list(required)}")
  header = rows[h]
  _refuse_repeated_columns(header, required, where, h + 1)
  have = {_header_key(v) for v in header}
  missing = [c for c in required if _header_key(c) not in have]
  if missing:
    raise DatasetError(f"{where}: header on row {h + 1} lacks columns {missing}; found "
                       f"{[v for v in header if v is not None]}")
  out, blank = [], []
  wanted = [i for i, v in enumerate(header) if _header_key(v) in {_header_key(c) for c in required}]
  for n, values in enumerate(rows[h + 1:], start=h + 2):
    cells = {str(k).strip(): v for k, v in zip(header, values) if k is not None and str(k).strip()}
    if all(v is None or (isinstance(v, str) and not v.strip()) for v in cells.values()):
      continue
    out.append(Row(n, cells))
    blank += [(n, i) for i in wanted if i >= len(values) or values[i] is None]
  if blank and not path.lower().endswith(".csv"):
    _refuse_formulas_without_values(path, sheet, where, header, blank)
  return out


def _refuse_formulas_without_values(path: str, sheet: str | None, where: str,
                                    header: Sequence[Any], blank: list[tuple[int, int]]) -> None:
  """A DatasetError naming the first of the blank cells the reader uses (row number, 0-based
  column) that holds a formula: the file keeps no value for it (it was saved by a program that
  writes formulas without computing them), so its value cannot be read."""
  rows = _raw_rows(path, sheet, formulas=True)
  for n, i in blank:
    formula = rows[n - 1][i] if n - 1 < len(rows) and i < len(rows[n - 1]) else None
    if isinstance(formula, str) and formula.startswith("="):
      raise DatasetError(
          f"{where}: cell {column_letter(i + 1)}{n} ({header[i]!r}) holds the formula {formula!r} "
          f"with no saved value: the file was last saved by a program that writes formulas "
          f"without computing them (a script using openpyxl or pandas, for example). Open it in "
          f"Excel or LibreOffice and save it again (which stores the values), or type the "
          f"value in place of the formula")


def cell(row: Row, column: str) -> Any:
  """A cell by header name (case-insensitive); None if the row is short."""
  key = _header_key(column)
  for k, v in row.cells.items():
    if _header_key(k) == key:
      return v
  return None


def as_int(value: Any) -> int | None:
  """An integer from an int/float cell or text such as '355' or '355.0'; None otherwise.

  >>> [as_int(v) for v in (46, 46.0, ' 46 ', '46.0', '/', None, 4.5, '')]
  [46, 46, 46, 46, None, None, None, None]
  """
  if isinstance(value, bool) or value is None:
    return None
  if isinstance(value, int):
    return value
  try:
    f = float(str(value).strip())
  except ValueError:
    return None
  return int(f) if f.is_integer() else None


def as_text(value: Any) -> str:
  """Cell text with surrounding whitespace removed; integral numbers without '.0'.

  >>> [as_text(v) for v in (12, 4.0, ' 4+7+L10 ', None)]
  ['12', '4', '4+7+L10', '']
  """
  if value is None:
    return ""
  if isinstance(value, float) and value.is_integer():
    value = int(value)
  return str(value).strip()
