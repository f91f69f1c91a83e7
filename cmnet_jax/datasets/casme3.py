"""CAS(ME)^3 Part A reader: `cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx` (sheet `label`, all text)
with either the clip release `Part_A_ME_clip/frame/spNO.1_a_355/355.jpg` or the full videos
`part_A/.../spNO.1/a/color/355.jpg`. Folder names match case-insensitively.

Several MEs share a (Subject, Filename): the clip id is `{Filename}_{Onset}`. Broken rows
(offset 0, apex before onset, apex after offset, onset after offset) are skipped with their reason.
Classes: '7class' (default) = the seven emotions; '4class' = negative (anger, disgust, fear,
sad), positive (happy), surprise, others; '3class' = the same without others.
"""
import os
import re

from cmnet_jax.datasets import frames as frames_lib
from cmnet_jax.datasets import index as index_lib
from cmnet_jax.datasets import registry
from cmnet_jax.datasets import spreadsheet

NAME = "casme3"
ANNOTATION_NAMES = ("cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx", "cas(me)3_part_A_ME_label*.xlsx")
FRAME_FOLDERS = ("Part_A_ME_clip/frame", "part_A")
SHEET = "label"
COLUMNS = ("Subject", "Filename", "Onset", "Apex", "Offset", "AU", "emotion")
EMOTIONS = ("anger", "disgust", "fear", "happy", "sad", "surprise", "others")
_NEGATIVE = ("anger", "disgust", "fear", "sad")
SCHEMES = {
    "7class": [(e, (e,)) for e in EMOTIONS],
    "4class": [("negative", _NEGATIVE), ("positive", ("happy",)), ("surprise", ("surprise",)),
               ("others", ("others",))],
    "3class": [("negative", _NEGATIVE), ("positive", ("happy",)), ("surprise", ("surprise",))],
}
DATABASE = registry.DatabaseInfo(
    name=NAME, title="CAS(ME)^3 Part A", schemes=SCHEMES, default_classes="7class",
    emotions=EMOTIONS,
    request="the CASME team, Institute of Psychology, Chinese Academy of Sciences (licence "
            "agreement and request form at http://casme.psych.ac.cn/casme/e4)",
    layout=("Part_A_ME_clip/frame/spNO.1_a_355/355.jpg ... (or the full videos "
            "part_A/.../spNO.1/a/color/355.jpg)",
            "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx (sheet label)"))


def subject_name(value: object) -> str:
  """'spNO.1', 'spno.1' or 'spNO1' -> 'spNO.1' (other text unchanged).

  >>> [subject_name(v) for v in ('spNO.1', 'spno.216', 'SPNO7')]
  ['spNO.1', 'spNO.216', 'spNO.7']
  """
  text = spreadsheet.as_text(value)
  match = re.fullmatch(r"sp\s*no\.?\s*(\d+)", text, flags=re.IGNORECASE)
  return f"spNO.{int(match.group(1))}" if match else text


def _video_subjects(frames_root: str) -> dict[str, str]:
  """Lower-case subject folder name -> path, anywhere up to 4 levels under `part_A`."""
  found = {}
  for dirpath, dirnames, _ in os.walk(frames_root):
    if dirpath[len(frames_root):].count(os.sep) >= 4:
      dirnames[:] = []
    for d in dirnames:
      if re.fullmatch(r"sp\s*no\.?\s*\d+", d, flags=re.IGNORECASE):
        found.setdefault(subject_name(d).lower(), os.path.join(dirpath, d))
  return found


def _broken(onset: int | None, apex: int | None, offset: int | None) -> str | None:
  if onset is None or apex is None or offset is None:
    return f"broken row: onset/apex/offset {onset!r}/{apex!r}/{offset!r} are not all integers"
  if offset <= 0:
    return f"broken row: offset {offset}"
  if onset < 0:
    return f"broken row: onset {onset} (frame numbers are never negative)"
  if onset > offset:
    return f"broken row: onset {onset} after offset {offset}"
  if not onset <= apex <= offset:
    return f"broken row: apex {apex} outside [{onset}, {offset}]"
  return None


def read_records(root: str, *, annotation: str | None = None, frames: str | None = None
                 ) -> tuple[list[index_lib.ClipRecord], list[index_lib.Skipped], list[str]]:
  """Unlabelled records of every usable ME row, plus skipped items and repair notes."""
  path = index_lib.find_annotation(root, annotation, ANNOTATION_NAMES, NAME)
  frames_root = frames_lib.resolve_folder(root, frames, FRAME_FOLDERS, NAME)
  clip_layout = os.path.basename(frames_root).lower() == "frame"
  subjects = {} if clip_layout else _video_subjects(frames_root)
  records, skipped, notes, seen = [], [], [], set()
  for row in spreadsheet.read_table(path, sheet=SHEET, required=COLUMNS):
    subject = subject_name(spreadsheet.cell(row, "Subject"))
    filename = spreadsheet.as_text(spreadsheet.cell(row, "Filename"))
    if not subject or not filename:
      raise index_lib.DatasetError(f"{path!r} row {row.number}: expected Subject and Filename "
                                   f"text, got {subject!r} and {filename!r}")
    onset, apex, offset = (spreadsheet.as_int(spreadsheet.cell(row, c))
                           for c in ("Onset", "Apex", "Offset"))
    item = f"{subject}/{filename}_{onset} ({os.path.basename(path)} row {row.number})"
    reason = _broken(onset, apex, offset)
    if reason:
      skipped.append(index_lib.Skipped(item, reason))
      continue
    if (subject, filename, onset) in seen:
      skipped.append(index_lib.Skipped(item, "duplicate (Subject, Filename, Onset) key"))
      continue
    seen.add((subject, filename, onset))
    if clip_layout:
      name = f"{spreadsheet.as_text(spreadsheet.cell(row, 'Subject'))}_{filename}_{onset}"
      for value in (name, f"{subject}_{filename}_{onset}"):
        frames_lib.check_inside(frames_root, value, item, "Subject_Filename_Onset")
      folder = (frames_lib.find_child(frames_root, name)
                or frames_lib.find_child(frames_root, f"{subject}_{filename}_{onset}"))
    else:
      folder = subjects.get(subject.lower())
      frames_lib.check_inside(folder or os.path.join(frames_root, subject), filename, item)
      folder = folder and frames_lib.find_child(folder, filename)
      folder = folder and (frames_lib.find_child(folder, "color") or folder)
    if not folder or not os.path.isdir(folder):
      skipped.append(index_lib.Skipped(item, f"clip folder not found under {frames_root!r}"))
      continue
    record = frames_lib.annotated_record(
        NAME, subject, f"{filename}_{onset}", folder, onset, apex, offset,
        spreadsheet.as_text(spreadsheet.cell(row, "emotion")),
        spreadsheet.as_text(spreadsheet.cell(row, "AU")), notes, suffixes=(".jpg", ".jpeg"),
        row=f"{os.path.basename(path)} row {row.number}")
    short = frames_lib.too_short(record)
    if short:
      skipped.append(index_lib.Skipped(item, short))
      continue
    records.append(record)
  return records, skipped, notes

