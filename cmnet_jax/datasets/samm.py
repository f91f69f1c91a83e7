"""SAMM reader: `SAMM/006/006_1_2/006_05562.jpg` + `SAMM_Micro_FACS_Codes_v2.xlsx` (MICRO_ONLY).

The header row is found by its first cell 'Subject' (row 14 after the preamble, or row 1).
`Duration` is a formula and is not read. Classes: '5class' (default) = Anger, Contempt,
Happiness, Surprise, Other; '3class' = MEGC2019: negative = anger, contempt, disgust, fear,
sadness; positive = happiness; surprise = surprise.
"""
import os
import re

from cmnet_jax.datasets import frames as frames_lib
from cmnet_jax.datasets import index as index_lib
from cmnet_jax.datasets import spreadsheet

NAME = "samm"
ANNOTATION_NAMES = ("SAMM_Micro_FACS_Codes_v2.xlsx", "SAMM_Micro_FACS_Codes*.xlsx")
FRAME_FOLDERS = ("SAMM", "")
SHEET = "MICRO_ONLY"
COLUMNS = ("Subject", "Filename", "Onset Frame", "Apex Frame", "Offset Frame", "Action Units",
           "Estimated Emotion")
EMOTIONS = ("Anger", "Other", "Happiness", "Surprise", "Contempt", "Disgust", "Fear", "Sadness")
SCHEMES = {
    "5class": [(e, (e.lower(),)) for e in ("Anger", "Contempt", "Happiness", "Surprise", "Other")],
    "3class": [("negative", ("anger", "contempt", "disgust", "fear", "sadness")),
               ("positive", ("happiness",)), ("surprise", ("surprise",))],
}


def subject_name(value: object) -> str | None:
  """'006', 6 or '6' -> '006'; None if it is not a number.

  >>> [subject_name(v) for v in ('006', 6, '37', 'x')]
  ['006', '006', '037', None]
  """
  match = re.fullmatch(r"0*(\d+)", spreadsheet.as_text(value))
  return f"{int(match.group(1)):03d}" if match else None


def read_records(root: str, *, annotation: str | None = None, frames: str | None = None
                 ) -> tuple[list[index_lib.ClipRecord], list[index_lib.Skipped], list[str]]:
  """Unlabelled records of every coded clip, plus skipped items and repair notes."""
  path = index_lib.find_annotation(root, annotation, ANNOTATION_NAMES, NAME)
  frames_root = frames_lib.resolve_folder(root, frames, FRAME_FOLDERS, NAME)
  records, skipped, notes, seen = [], [], [], set()
  for row in spreadsheet.read_table(path, sheet=SHEET, required=COLUMNS):
    subject = subject_name(spreadsheet.cell(row, "Subject"))
    filename = spreadsheet.as_text(spreadsheet.cell(row, "Filename"))
    if subject is None or not filename:
      raise index_lib.DatasetError(
          f"{path!r} row {row.number}: expected a subject number and a filename, got "
          f"{spreadsheet.cell(row, 'Subject')!r} and {filename!r}")
    item = f"{subject}/{filename} ({os.path.basename(path)} row {row.number})"
    onset = spreadsheet.as_int(spreadsheet.cell(row, "Onset Frame"))
    offset = spreadsheet.as_int(spreadsheet.cell(row, "Offset Frame"))
    apex_written = spreadsheet.cell(row, "Apex Frame")
    if onset is None or offset is None or onset > offset:
      skipped.append(index_lib.Skipped(item, f"broken row: onset {onset!r} / offset {offset!r} "
                                             f"do not form a frame range"))
      continue
    if (subject, filename) in seen:
      skipped.append(index_lib.Skipped(item, "duplicate (Subject, Filename) key"))
      continue
    seen.add((subject, filename))
    folder = (frames_lib.find_child(frames_root, subject)
              or frames_lib.find_child(frames_root, str(int(subject))))
    folder = folder and frames_lib.find_child(folder, filename)
    if not folder or not os.path.isdir(folder):
      skipped.append(index_lib.Skipped(item, f"clip folder not found: {subject}/{filename} under "
                                             f"{frames_root!r}"))
      continue
    records.append(frames_lib.annotated_record(
        NAME, subject, filename, folder, onset, spreadsheet.as_int(apex_written), offset,
        spreadsheet.as_text(spreadsheet.cell(row, "Estimated Emotion")),
        spreadsheet.as_text(spreadsheet.cell(row, "Action Units")), notes,
        apex_written=apex_written))
  return records, skipped, notes


def load(root: str, *, classes: str | None = None, annotation: str | None = None,
         frames: str | None = None) -> index_lib.DatasetIndex:
  """The SAMM index; see `cmnet_jax.datasets.load_index`."""
  records, skipped, notes = read_records(root, annotation=annotation, frames=frames)
  names, kept, dropped = index_lib.apply_scheme(records, SCHEMES, classes, "5class", EMOTIONS,
                                                NAME)
  return index_lib.make_index(NAME, root, names, kept, skipped + dropped, notes)
