"""SMIC-HS reader: labels from the path, `SMIC_all_cropped/HS/s1/micro/negative/s1_ne_01/*.bmp`.

No annotation file: each clip folder holds only the ME frames, so onset = first frame, offset =
last frame, and the apex (not annotated) is the middle frame. `non_micro` folders are ignored.
Gaps in a clip's frame numbering (some cropped clips miss frames) are noted in the report. A
folder named like a copy of a clip folder beside it (`s1_ne_01 - Copy`, `s1_ne_01 copy 2`,
`s1_ne_01 (1)`) is skipped with that reason, so the clip counts once.
Classes: '3class' = negative, positive, surprise.
"""
import os
import re

from cmnet_jax.datasets import frames as frames_lib
from cmnet_jax.datasets import index as index_lib
from cmnet_jax.datasets import registry

NAME = "smic"
FRAME_FOLDERS = ("SMIC_all_cropped/HS", "SMIC_all_raw/HS", "HS", "")
EMOTIONS = ("negative", "positive", "surprise")
SCHEMES = {"3class": [(e, (e,)) for e in EMOTIONS]}
DATABASE = registry.DatabaseInfo(
    name=NAME, title="SMIC-HS", schemes=SCHEMES, default_classes="3class", emotions=EMOTIONS,
    request="the Center for Machine Vision and Signal Analysis, University of Oulu (Guoying Zhao "
            "and Xiaobai Li, https://www.oulu.fi/cmvs/; request by e-mail, licence agreement "
            "required)",
    layout=("SMIC_all_cropped/HS/s1/micro/negative/s1_ne_01/reg_image559740.bmp ... (or "
            "SMIC_all_raw/HS/...; no annotation file: the labels come from the folders)",))


def subject_name(value: object) -> str | None:
  """'s01', 's1' or 'S1' -> 's1'; None otherwise.

  >>> [subject_name(v) for v in ('s01', 's1', 'S20', 'x1')]
  ['s1', 's1', 's20', None]
  """
  match = re.fullmatch(r"s0*(\d+)", str(value).strip().lower())
  return f"s{int(match.group(1))}" if match else None


def clip_name(value: str) -> str:
  """'s01_ne_01' -> 's1_ne_01' (the MEGC2019 list pads the subject, the folders do not)."""
  match = re.fullmatch(r"s0*(\d+)(_.*)", value.strip(), flags=re.IGNORECASE)
  return f"s{int(match.group(1))}{match.group(2)}" if match else value.strip()


def copy_of(folder: str, siblings: set[str]) -> str | None:
  """The sibling folder that `folder` is named as a copy of, or None.

  >>> copy_of('s1_ne_01 - Copy (2)', {'s1_ne_01'}), copy_of('s1_ne_010', {'s1_ne_01'})
  ('s1_ne_01', None)
  """
  for sibling in sorted(siblings, key=len, reverse=True):
    rest = folder[len(sibling):]
    if folder != sibling and folder.startswith(sibling) and re.match(r"[\s(.-]", rest):
      return sibling
  return None


def _clip_folders(frames_root: str, skipped: list[index_lib.Skipped]
                  ) -> tuple[dict[tuple[str, str, str], str], int]:
  """{(subject, emotion, clip): folder} of the clip folders under `<subject>/micro/<emotion>/`,
  and how many subjects have a `non_micro` folder (ignored);
  subjects without a `micro` folder and copies of a clip folder join `skipped` with the reason."""
  out, ignored = {}, 0
  for entry in sorted(os.listdir(frames_root)):
    subject = subject_name(entry)
    if subject is None or not os.path.isdir(os.path.join(frames_root, entry)):
      continue
    ignored += frames_lib.find_child(os.path.join(frames_root, entry), "non_micro") is not None
    micro = frames_lib.find_child(os.path.join(frames_root, entry), "micro")
    if micro is None:
      skipped.append(index_lib.Skipped(f"{entry}/", "subject folder has no 'micro' folder"))
      continue
    for emotion in sorted(os.listdir(micro)):
      class_dir = os.path.join(micro, emotion)
      clips = {c for c in (os.listdir(class_dir) if os.path.isdir(class_dir) else ())
               if os.path.isdir(os.path.join(class_dir, c))}
      for clip in sorted(clips):
        original = copy_of(clip, clips)
        if original:
          skipped.append(index_lib.Skipped(
              f"{NAME} {subject}/{clip}", f"named as a copy of the clip folder {original!r} "
                                          f"beside it in {class_dir!r}; the clip counts once"))
        else:
          out[(subject, emotion, clip)] = os.path.join(class_dir, clip)
  return out, ignored


def read_records(root: str, *, annotation: str | None = None, frames: str | None = None
                 ) -> tuple[list[index_lib.ClipRecord], list[index_lib.Skipped], list[str]]:
  """Records of every clip folder under `<subject>/micro/<class>/`, skipped items and notes."""
  del annotation  # SMIC has none
  frames_root = frames_lib.resolve_folder(root, frames, FRAME_FOLDERS, NAME)
  records, skipped, notes = [], [], []
  folders, ignored = _clip_folders(frames_root, skipped)
  for (subject, emotion, clip), folder in folders.items():
    item = f"{NAME} {subject}/{clip}"
    found = frames_lib.list_frames(folder, item=item)
    if not found:
      raise index_lib.DatasetError(f"{item}: clip folder {folder!r} holds no frame images "
                                   f"(expected image*.bmp / reg_image*.bmp files)")
    numbers = tuple(n for n, _ in found)
    if numbers[-1] - numbers[0] + 1 != len(numbers):
      notes.append(f"{item}: {numbers[-1] - numbers[0] + 1 - len(numbers)} frames missing "
                   f"between {numbers[0]} and {numbers[-1]}; using the {len(numbers)} present")
    found, note = frames_lib.same_size(found, item)
    notes += [note] if note else []
    numbers = tuple(n for n, _ in found)
    record = index_lib.ClipRecord(
        NAME, subject, clip, tuple(p for _, p in found), numbers[0],
        numbers[len(numbers) // 2], numbers[-1], emotion, -1, "", numbers)
    short = frames_lib.too_short(record)
    if short:
      skipped.append(index_lib.Skipped(item, short))
      continue
    records.append(record)
  if records:
    notes.insert(0, f"SMIC has no apex annotation: the middle frame is the apex of all "
                    f"{len(records)} clips")
  if ignored:
    notes.append(f"ignored the non_micro folders of {ignored} subjects")
  return records, skipped, notes
