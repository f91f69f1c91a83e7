"""SAMM reader: `SAMM/006/006_1_2/006_05562.jpg` + `SAMM_Micro_FACS_Codes_v2.xlsx` (MICRO_ONLY).

The header row is found by its first cell 'Subject' (row 14 after the preamble, or row 1).
`Duration` is a formula and is not read. Classes: '5class' (default) = Anger, Contempt,
Happiness, Surprise, Other; '3class' = MEGC2019: negative = anger, contempt, disgust, fear,
sadness; positive = happiness; surprise = surprise.
"""
import re

from cmnet_jax.datasets import coding
from cmnet_jax.datasets import frames as frames_lib
from cmnet_jax.datasets import registry
from cmnet_jax.datasets import spreadsheet

NAME = "samm"
ANNOTATION_NAMES = ("SAMM_Micro_FACS_Codes_v2.xlsx", "SAMM_Micro_FACS_Codes*.xlsx")
FRAME_FOLDERS = ("SAMM", "")
SHEET = "MICRO_ONLY"
COLUMNS = coding.Columns("Subject", "Filename", "Onset Frame", "Apex Frame", "Offset Frame",
                         emotion="Estimated Emotion", action_units="Action Units")
EMOTIONS = ("Anger", "Other", "Happiness", "Surprise", "Contempt", "Disgust", "Fear", "Sadness")
SCHEMES = {
    "5class": [(e, (e.lower(),)) for e in ("Anger", "Contempt", "Happiness", "Surprise", "Other")],
    "3class": [("negative", ("anger", "contempt", "disgust", "fear", "sadness")),
               ("positive", ("happiness",)), ("surprise", ("surprise",))],
}
DATABASE = registry.DatabaseInfo(
    name=NAME, title="SAMM", schemes=SCHEMES, default_classes="5class", emotions=EMOTIONS,
    request="Manchester Metropolitan University (Moi Hoon Yap's group; licence agreement and "
            "request form at https://helward.mmu.ac.uk/STAFF/M.Yap/dataset.php)",
    layout=("SAMM/006/006_1_2/006_05562.jpg ... (or 006/... directly under the root)",
            "SAMM_Micro_FACS_Codes_v2.xlsx (sheet MICRO_ONLY)"))


def subject_name(value: object) -> str | None:
  """'006', 6 or '6' -> '006'; None if it is not a number.

  >>> [subject_name(v) for v in ('006', 6, '37', 'x')]
  ['006', '006', '037', None]
  """
  match = re.fullmatch(r"0*(\d+)", spreadsheet.as_text(value))
  return f"{int(match.group(1)):03d}" if match else None


def subject_folder(frames_root: str, subject: str) -> str | None:
  """The subject's folder: `006`, or `6` as some users renamed it."""
  return (frames_lib.find_child(frames_root, subject)
          or frames_lib.find_child(frames_root, str(int(subject))))


read_records = coding.coded_reader(
    NAME, annotation_names=ANNOTATION_NAMES, frame_folders=FRAME_FOLDERS, sheet=SHEET,
    columns=COLUMNS, subject_name=subject_name, subject_folder=subject_folder)
