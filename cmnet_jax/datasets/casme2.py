"""CASME II reader: `Cropped/sub01/EP02_01f/reg_img46.jpg` + `CASME2-coding-*.xlsx`.

Classes: '5class' (default) = happiness, disgust, repression, surprise, others; '3class' = the
MEGC2019 composite as built for CASME II: negative = disgust + repression, positive = happiness,
surprise = surprise. Other emotions are skipped with their reason.
"""
import os
import re

from cmnet_jax.datasets import coding
from cmnet_jax.datasets import frames as frames_lib
from cmnet_jax.datasets import registry
from cmnet_jax.datasets import spreadsheet

NAME = "casme2"
ANNOTATION_NAMES = ("CASME2-coding-20190701.xlsx", "CASME2-coding-20140508.xlsx",
                    "CASME2-coding-*.xlsx", "CASME2-coding-*.csv")
FRAME_FOLDERS = ("Cropped", "Cropped-updated/Cropped", "CASME2_RAW_selected", "CASME2-RAW")
SHEET = "Sheet1"
COLUMNS = coding.Columns("Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame",
                         emotion="Estimated Emotion", action_units="Action Units")
EMOTIONS = ("happiness", "disgust", "repression", "surprise", "others", "sadness", "fear")
SCHEMES = {
    "5class": [(e, (e,)) for e in ("happiness", "disgust", "repression", "surprise", "others")],
    "3class": [("negative", ("disgust", "repression")), ("positive", ("happiness",)),
               ("surprise", ("surprise",))],
}
DATABASE = registry.DatabaseInfo(
    name=NAME, title="CASME II", schemes=SCHEMES, default_classes="5class", emotions=EMOTIONS,
    request="the CASME team, Institute of Psychology, Chinese Academy of Sciences (licence "
            "agreement and request form at http://casme.psych.ac.cn/casme/e2)",
    layout=("Cropped/sub01/EP02_01f/reg_img46.jpg ... (or Cropped-updated/Cropped/, "
            "CASME2_RAW_selected/, CASME2-RAW/; subject folders sub01 or 1)",
            "CASME2-coding-20190701.xlsx (or CASME2-coding-20140508.xlsx)"))


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



read_records = coding.coded_reader(
    NAME, annotation_names=ANNOTATION_NAMES, frame_folders=FRAME_FOLDERS, sheet=SHEET,
    columns=COLUMNS, subject_name=subject_name, subject_folder=subject_folder)
