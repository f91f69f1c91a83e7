"""SAMM reader: `SAMM/006/006_1_2/006_05562.jpg` + `SAMM_Micro_FACS_Codes_v2.xlsx` (MICRO_ONLY).

The header row is found by its first cell 'Subject' (row 14 after the preamble, or row 1).
`Duration` is a formula and is not read. Classes: '5class' (default) = Anger, Contempt,
Happiness, Surprise, Other; '3class' = MEGC2019: negative = anger, contempt, disgust, fear,
sadness; positive = happiness; surprise = surprise.
"""
import re

from cmnet_jax.datasets import coding
from cmnet_jax.datasets import frames as frames_lib
from cmnet_jax.datasets import index as index_lib
from cmnet_jax.datasets import spreadsheet

NAME = "samm"
ANNOTATION_NAMES = ("SAMM_Micro_FACS_Codes_v2.xlsx", "SAMM_Micro_FACS_Codes*.xlsx")
FRAME_FOLDERS = ("SAMM", "")
SHEET = "MICRO_ONLY"
COLUMNS = coding.Columns("Subject", "Filename", "Onset Frame", "Apex Frame", "Offset Frame",
                         "Action Units", "Estimated Emotion")
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
  return coding.read_coded_rows(NAME, path, frames_root, sheet=SHEET, columns=COLUMNS,
                                subject_name=subject_name, subject_folder=subject_folder)


def subject_folder(frames_root: str, subject: str) -> str | None:
  """The subject's folder: `006`, or `6` as some users renamed it."""
  return (frames_lib.find_child(frames_root, subject)
          or frames_lib.find_child(frames_root, str(int(subject))))


def load(root: str, *, classes: str | None = None, annotation: str | None = None,
         frames: str | None = None) -> index_lib.DatasetIndex:
  """The SAMM index; see `cmnet_jax.datasets.load_index`."""
  return index_lib.labelled_index(NAME, root, read_records(root, annotation=annotation,
                                                           frames=frames),
                                  SCHEMES, classes, "5class", EMOTIONS)
