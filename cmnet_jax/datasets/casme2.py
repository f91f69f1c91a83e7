"""CASME II reader: `Cropped/sub01/EP02_01f/reg_img46.jpg` + `CASME2-coding-*.xlsx`.

Classes: '5class' (default) = happiness, disgust, repression, surprise, others; '3class' = the
MEGC2019 composite as built for CASME II: negative = disgust + repression, positive = happiness,
surprise = surprise. Other emotions are skipped with their reason.
"""
import os
import re

from cmnet_jax.datasets import coding
from cmnet_jax.datasets import frames as frames_lib
from cmnet_jax.datasets import index as index_lib
from cmnet_jax.datasets import spreadsheet

NAME = "casme2"
ANNOTATION_NAMES = ("CASME2-coding-20190701.xlsx", "CASME2-coding-20140508.xlsx",
                    "CASME2-coding-*.xlsx", "CASME2-coding-*.csv")
FRAME_FOLDERS = ("Cropped", "Cropped-updated/Cropped", "CASME2_RAW_selected", "CASME2-RAW")
SHEET = "Sheet1"
COLUMNS = coding.Columns("Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame",
                         "Action Units", "Estimated Emotion")
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
  return coding.read_coded_rows(NAME, path, frames_root, sheet=SHEET, columns=COLUMNS,
                                subject_name=subject_name, subject_folder=subject_folder)


def load(root: str, *, classes: str | None = None, annotation: str | None = None,
         frames: str | None = None) -> index_lib.DatasetIndex:
  """The CASME II index; see `cmnet_jax.datasets.load_index`."""
  return index_lib.labelled_index(NAME, root, read_records(root, annotation=annotation,
                                                           frames=frames),
                                  SCHEMES, classes, "5class", EMOTIONS)
