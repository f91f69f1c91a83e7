"""CASME II reader: `Cropped/sub01/EP02_01f/reg_img46.jpg` + `CASME2-coding-*.xlsx`.

Classes: '5class' (default) = happiness, disgust, repression, surprise, others; '3class' = the
MEGC2019 composite as built for CASME II: negative = disgust + repression, positive = happiness,
surprise = surprise. Other emotions are skipped with their reason.
"""
import os
import re

from cmnet_jax.datasets import frames as frames_lib
from cmnet_jax.datasets import index as index_lib
from cmnet_jax.datasets import spreadsheet

NAME = "casme2"
ANNOTATION_NAMES = ("CASME2-coding-20190701.xlsx", "CASME2-coding-20140508.xlsx",
                    "CASME2-coding-*.xlsx", "CASME2-coding-*.csv")
FRAME_FOLDERS = ("Cropped", "Cropped-updated/Cropped", "CASME2_RAW_selected", "CASME2-RAW")
SHEET = "Sheet1"
COLUMNS = ("Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Action Units",
           "Estimated Emotion")
EMOTIONS = ("happiness", "disgust", "repression", "surprise", "others", "sadness", "fear")
SCHEMES = {
    "5class": [(e, (e,)) for e in ("happiness", "disgust", "repression", "surprise", "others")],
    "3class": [("negative", ("disgust", "repression")), ("positive", ("happiness",)),
               ("surprise", ("surprise",))],
}


def subject_name(value: object) -> str | None:
  """'01', 1, 'sub1' or 'sub01' -> 'sub01'; None if there is no subject number.

  >>> [subject_name(v) for v in ('01', 1, 'sub1', 'SUB26', 'x')]
  ['sub01', 'sub01', 'sub01', 'sub26', None]
  """
  match = re.fullmatch(r"(?:sub)?0*(\d+)", spreadsheet.as_text(value).lower())
  return f"sub{int(match.group(1)):02d}" if match else None


def subject_folder(frames_root: str, subject: str) -> str | None:
  """The subject's folder: `sub01`, or `1` / `01` as some users renamed it."""
  number = int(subject[3:])
  for name in (subject, str(number), f"{number:02d}"):
    path = frames_lib.find_child(frames_root, name)
    if path and os.path.isdir(path):
      return path
  return None


def read_records(root: str, *, annotation: str | None = None, frames: str | None = None
                 ) -> tuple[list[index_lib.ClipRecord], list[index_lib.Skipped], list[str]]:
  """Unlabelled records of every coded clip, plus skipped items and repair notes."""
  path = index_lib.find_annotation(root, annotation, ANNOTATION_NAMES, NAME)
  frames_root = frames_lib.resolve_folder(root, frames, FRAME_FOLDERS, NAME)
  records, skipped, notes, seen = [], [], [], set()
  for row in spreadsheet.read_table(path, sheet=SHEET, required=COLUMNS):
    where = f"{os.path.basename(path)} row {row.number}"
    subject = subject_name(spreadsheet.cell(row, "Subject"))
    filename = spreadsheet.as_text(spreadsheet.cell(row, "Filename"))
    if subject is None or not filename:
      raise index_lib.DatasetError(
          f"{path!r} row {row.number}: expected a subject number and a filename, got "
          f"{spreadsheet.cell(row, 'Subject')!r} and {filename!r}")
    item = f"{subject}/{filename} ({where})"
    onset = spreadsheet.as_int(spreadsheet.cell(row, "OnsetFrame"))
    offset = spreadsheet.as_int(spreadsheet.cell(row, "OffsetFrame"))
    apex_written = spreadsheet.cell(row, "ApexFrame")
    if onset is None or offset is None or onset > offset:
      skipped.append(index_lib.Skipped(item, f"broken row: onset {onset!r} / offset {offset!r} "
                                             f"do not form a frame range"))
      continue
    if (subject, filename) in seen:
      skipped.append(index_lib.Skipped(item, "duplicate (Subject, Filename) key"))
      continue
    seen.add((subject, filename))
    folder = subject_folder(frames_root, subject)
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
  """The CASME II index; see `cmnet_jax.datasets.load_index`."""
  records, skipped, notes = read_records(root, annotation=annotation, frames=frames)
  names, kept, dropped = index_lib.apply_scheme(records, SCHEMES, classes, "5class", EMOTIONS,
                                                NAME)
  return index_lib.make_index(NAME, root, names, kept, skipped + dropped, notes)
