"""The per-clip coding spreadsheets of CASME II and SAMM, read the same way.

One row per clip: subject, filename, onset / apex / offset frame, estimated emotion and,
where the sheet has them, action units; the frames are in `<frames root>/<subject folder>/<filename>/`. The two databases differ
only in column names, subject spelling and how the subject folder is found, which the caller
passes in. Rows that cannot be used (a broken frame range, a repeated (subject, filename) key,
a missing clip folder) are skipped with their reason, never dropped silently; a row with no
subject number or filename is an error naming the file and row.
"""
import os
from typing import Any, Callable, NamedTuple

from cmnet_jax.datasets import frames as frames_lib
from cmnet_jax.datasets import index as index_lib
from cmnet_jax.datasets import spreadsheet


class Columns(NamedTuple):
  """Header names of the columns read. The first six are required; `action_units` is optional
  (None: the sheet has no such column, and the records' action units are '').

  >>> Columns('Subject', 'Filename', 'Onset', 'Apex', 'Offset', 'Emotion').required()
  ('Subject', 'Filename', 'Onset', 'Apex', 'Offset', 'Emotion')
  >>> Columns('Subject', 'Filename', 'Onset', 'Apex', 'Offset', 'Emotion', 'AU').required()
  ('Subject', 'Filename', 'Onset', 'Apex', 'Offset', 'AU', 'Emotion')
  """
  subject: str
  filename: str
  onset: str
  apex: str
  offset: str
  emotion: str
  action_units: str | None = None

  def required(self) -> tuple[str, ...]:
    """The header names that must be present, in the sheets' order (action units, if given,
    before the emotion)."""
    return tuple(c for c in (self.subject, self.filename, self.onset, self.apex, self.offset,
                             self.action_units, self.emotion) if c is not None)


def read_coded_rows(name: str, path: str, frames_root: str, *, sheet: str, columns: Columns,
                    subject_name: Callable[[object], str | None],
                    subject_folder: Callable[[str, str], str | None]
                    ) -> tuple[list[index_lib.ClipRecord], list[index_lib.Skipped], list[str]]:
  """Unlabelled records of every usable row of `path`, plus skipped items and repair notes.

  Args:
    name: the database's name (records' `dataset`).
    path: the coding spreadsheet (.xlsx or .csv).
    frames_root: folder holding the subject folders.
    sheet: worksheet name (ignored for .csv).
    columns: header names.
    subject_name: cell value -> canonical subject ('sub01', '006'), None if not a subject number.
    subject_folder: (frames_root, subject) -> the subject's folder, or None.
  """
  records, skipped, notes, seen = [], [], [], {}
  for row in spreadsheet.read_table(path, sheet=sheet, required=columns.required()):
    subject = subject_name(spreadsheet.cell(row, columns.subject))
    filename = spreadsheet.as_text(spreadsheet.cell(row, columns.filename)).rstrip("/\\")
    if subject is None or not filename:
      raise index_lib.DatasetError(
          f"{path!r} row {row.number}: expected a subject number and a filename, got "
          f"{spreadsheet.cell(row, columns.subject)!r} and {filename!r}")
    item = f"{subject}/{filename} ({os.path.basename(path)} row {row.number})"
    onset = spreadsheet.as_int(spreadsheet.cell(row, columns.onset))
    offset = spreadsheet.as_int(spreadsheet.cell(row, columns.offset))
    apex_written = spreadsheet.cell(row, columns.apex)
    if onset is None or offset is None or onset > offset or onset < 0:
      skipped.append(index_lib.Skipped(item, f"broken row: onset {onset!r} / offset {offset!r} "
                                             f"do not form a frame range"
                                             + (" (frame numbers are never negative)"
                                                if onset is not None and onset < 0 else "")))
      continue
    values = {c: spreadsheet.as_text(spreadsheet.cell(row, c))
              for c in (columns.emotion, columns.onset, columns.apex, columns.offset,
                        columns.action_units) if c is not None}
    if (subject, filename) in seen:
      skipped.append(index_lib.Skipped(item, duplicate_reason(
          "(Subject, Filename) key", *seen[(subject, filename)], row.number, values)))
      continue
    seen[(subject, filename)] = (row.number, values)
    frames_lib.check_inside(os.path.join(frames_root, subject), filename, item, columns.filename)
    folder = subject_folder(frames_root, subject)
    folder = folder and frames_lib.find_child(folder, filename)
    if not folder or not os.path.isdir(folder):
      skipped.append(index_lib.Skipped(item, f"clip folder not found: {subject}/{filename} under "
                                             f"{frames_root!r}"))
      continue
    record = frames_lib.annotated_record(
        name, subject, filename, folder, onset, spreadsheet.as_int(apex_written), offset,
        spreadsheet.as_text(spreadsheet.cell(row, columns.emotion)),
        values.get(columns.action_units, ""), notes,
        apex_written=apex_written, row=f"{os.path.basename(path)} row {row.number}")
    short = frames_lib.too_short(record)
    if short:
      skipped.append(index_lib.Skipped(item, short))
      continue
    records.append(record)
  return records, skipped, notes


def duplicate_reason(key: str, kept_row: int, kept: dict[str, str], row: int,
                     values: dict[str, str]) -> str:
  """Why a repeated row is skipped: which row was kept and whether the two differ, the label
  (the first of `values`) first.

  >>> duplicate_reason('(Subject, Filename) key', 2, {'Emotion': 'happiness', 'AU': '12'}, 9,
  ...                  {'Emotion': 'disgust', 'AU': '12'})
  "duplicate (Subject, Filename) key of row 2, which is kept; the labels differ: Emotion 'disgust' in row 9, 'happiness' in row 2 (check which is right)"
  """
  differ = [c for c in values if values[c] != kept.get(c)]
  if not differ:
    return f"duplicate {key} of row {kept_row}, which is kept; same values"
  label = next(iter(values))
  listed = "; ".join(f"{c} {values[c]!r} in row {row}, {kept.get(c)!r} in row {kept_row}"
                     for c in differ)
  what = "the labels differ" if label in differ else "the labels agree, other values differ"
  return (f"duplicate {key} of row {kept_row}, which is kept; {what}: {listed} (check which is "
          "right)")


def coded_reader(name: str, *, annotation_names: tuple[str, ...], frame_folders: tuple[str, ...],
                 sheet: str, columns: Columns, subject_name: Callable[[object], str | None],
                 subject_folder: Callable[[str, str], str | None]) -> Callable[..., Any]:
  """The `read_records(root, *, annotation=None, frames=None)` of a coding-sheet database.

  It finds the annotation file (`annotation`, else the first of `annotation_names` under root)
  and the frames folder (`frames`, else the first of `frame_folders`), then reads every row
  with `read_coded_rows`: (unlabelled records, skipped items, repair notes).
  """
  def read_records(root: str, *, annotation: str | None = None, frames: str | None = None
                   ) -> tuple[list[index_lib.ClipRecord], list[index_lib.Skipped], list[str]]:
    path = index_lib.find_annotation(root, annotation, annotation_names, name)
    frames_root = frames_lib.resolve_folder(root, frames, frame_folders, name)
    return read_coded_rows(name, path, frames_root, sheet=sheet, columns=columns,
                           subject_name=subject_name, subject_folder=subject_folder)

  read_records.__doc__ = (f"Unlabelled records of every coded {name} clip under `root`, plus "
                          f"skipped items and repair notes (`coding.read_coded_rows`).")
  return read_records
