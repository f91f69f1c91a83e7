"""Fake database trees in each database's real layout and file format, for tests.

Every real database is licence-restricted, so the tests write small copies with the same folder
and file naming, sheet names, header rows, cell types and quirks as the originals
(docs/datasets.md). Nothing here reads a real file. The CASME II coding sheet writer is the
library's own (`cmnet_jax.datasets.writers`, also used by the synthetic generator).

    from cmnet_jax.testing import fake_trees
    fake_trees.write_casme2_tree(tmp_path, [dict(subject=1, filename='EP02_01f', onset=46,
        apex=50, offset=54, action_units=12, emotion='happiness', objective_class=1)])
"""
import os
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from PIL import Image

from cmnet_jax.datasets.writers import CASME2_HEADER, excel_au, padded_text, write_sheet
from cmnet_jax.datasets.writers import write_casme2_coding

PathLike = str | os.PathLike

__all__ = ["CASME2_HEADER", "frame_value", "write_casme2_coding", "write_casme2_tree",
           "write_casme3_coding", "write_casme3_tree", "write_frames", "write_image",
           "write_megc2019_csv", "write_samm_coding", "write_samm_tree", "write_smic_tree"]


def write_image(path: PathLike, image: np.ndarray) -> str:
  """Writes a uint8 `[height, width]` (grey) or `[height, width, 3]` image, or a uint16 grey one
  (a 16-bit PNG); the format comes from the suffix."""
  os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
  image = np.asarray(image)
  Image.fromarray(image if image.dtype == np.uint16 else image.astype(np.uint8)).save(
      os.fspath(path))
  return os.fspath(path)


def frame_value(number: int) -> int:
  """The grey level of fake frame `number`, so tests can tell which frame was decoded.

  >>> frame_value(0), frame_value(5)
  (20, 205)
  """
  return 20 + (number * 37) % 200


def write_frames(folder: PathLike, numbers: Iterable[int], pattern: str, *,
                 size: tuple[int, int] = (6, 8), grey: bool = False) -> list[str]:
  """Writes flat frames `pattern.format(n)` (e.g. 'reg_img{}.jpg') of grey level `frame_value(n)`.

  `size` is (height, width); colour frames carry the level in every channel. The folder is
  created even when `numbers` is empty (an empty clip folder).
  """
  os.makedirs(os.fspath(folder), exist_ok=True)
  paths = []
  for n in numbers:
    image = np.full(size if grey else size + (3,), frame_value(n), np.uint8)
    paths.append(write_image(os.path.join(os.fspath(folder), pattern.format(n)), image))
  return paths


def _span(row: Mapping[str, Any], margin: int = 0) -> Iterable[int]:
  if "frames" in row:
    return row["frames"]
  return range(int(row["onset"]) - margin, int(row["offset"]) + margin + 1)


def write_casme2_tree(root: PathLike, rows: Sequence[Mapping[str, Any]], *,
                      frames_folder: str = "Cropped", prefix: str = "reg_img",
                      subject_folder: str = "sub{:02d}", margin: int = 0,
                      coding_name: str = "CASME2-coding-20190701.xlsx",
                      objective_class: bool = True, size: tuple[int, int] = (6, 8)) -> str:
  """A CASME II tree: `root/<frames_folder>/sub01/<Filename>/<prefix><n>.jpg` and the coding.

  Rows as for `write_casme2_coding` (int subjects), optionally with `frames` (the frame numbers
  to write; default onset - margin .. offset + margin) and `write=False` (coded, no folder).
  `subject_folder` '{:d}' gives the renamed `1` folders; `prefix` 'img' the RAW trees.
  """
  root = os.fspath(root)
  for row in rows:
    if row.get("write", True):
      folder = os.path.join(root, frames_folder, subject_folder.format(int(row["subject"])),
                            row["filename"])
      write_frames(folder, _span(row, margin), prefix + "{}.jpg", size=size)
  write_casme2_coding(os.path.join(root, coding_name), rows, objective_class=objective_class)
  return root


SAMM_HEADER = ("Subject", "Filename", "Inducement Code", "Onset Frame", "Apex Frame",
               "Offset Frame", "Duration", "Micro", "Action Units", "Estimated Emotion",
               "Objective Classes", "Notes")


def write_samm_coding(path: PathLike, rows: Sequence[Mapping[str, Any]], *,
                      preamble: bool = True) -> str:
  """Writes `SAMM_Micro_FACS_Codes_v2.xlsx`: sheet `MICRO_ONLY`, 13 preamble rows (or none),
  then the header; `Subject` as 3-digit text, `Duration` as an Excel formula (no cached value).

  Rows: subject, filename, onset, apex, offset, action_units, emotion (as written, e.g. 'Other').
  """
  table = [[f"SAMM database: micro-movement FACS codes (fake) line {i + 1}"] for i in range(12)]
  table = (table + [[]]) if preamble else []
  table.append(list(SAMM_HEADER))
  for row in rows:
    r = len(table) + 1
    table.append([padded_text(row["subject"], 3), row["filename"],
                  int(row["filename"].split("_")[1]), row["onset"], row["apex"], row["offset"],
                  f"=F{r}-D{r}+1", "Micro - 1/2", excel_au(row["action_units"]), row["emotion"],
                  row.get("objective_class", 1), row.get("notes")])
  return write_sheet(path, "MICRO_ONLY", table)


def write_samm_tree(root: PathLike, rows: Sequence[Mapping[str, Any]], *,
                    digits: Mapping[str, int] | None = None, preamble: bool = True,
                    size: tuple[int, int] = (6, 8)) -> str:
  """A SAMM tree: `root/SAMM/006/006_1_2/006_05562.jpg` (grey) and the coding beside `SAMM/`.

  `digits` maps a 3-digit subject to its frame-number padding (default 5; the real data mixes 4
  and 5). Rows as for `write_samm_coding`, optionally with `frames` and `write=False`.
  """
  root = os.fspath(root)
  for row in rows:
    if row.get("write", True):
      subject = padded_text(row["subject"], 3)
      pad = (digits or {}).get(subject, 5)
      write_frames(os.path.join(root, "SAMM", subject, row["filename"]), _span(row),
                   subject + "_{:0%dd}.jpg" % pad, size=size, grey=True)
  write_samm_coding(os.path.join(root, "SAMM_Micro_FACS_Codes_v2.xlsx"), rows, preamble=preamble)
  return root


def write_smic_tree(root: PathLike, clips: Sequence[Mapping[str, Any]], *, cropped: bool = True,
                    non_micro: bool = True, size: tuple[int, int] = (6, 8)) -> str:
  """A SMIC-HS tree `SMIC_all_cropped/HS/s1/micro/negative/s1_ne_01/reg_image559740.bmp`
  (or `SMIC_all_raw/HS/.../image559740.bmp`), plus a `non_micro` folder per subject.

  Clips: dicts with subject ('s1'), emotion ('negative' ...), clip ('s1_ne_01') and frames.
  """
  base = os.path.join(os.fspath(root), "SMIC_all_cropped" if cropped else "SMIC_all_raw", "HS")
  pattern = ("reg_image" if cropped else "image") + "{}.bmp"
  for clip in clips:
    write_frames(os.path.join(base, clip["subject"], "micro", clip["emotion"], clip["clip"]),
                 clip["frames"], pattern, size=size)
    if non_micro:
      write_frames(os.path.join(base, clip["subject"], "non_micro", "n_01"), [1, 2], pattern,
                   size=size)
  return os.fspath(root)


CASME3_HEADER = ("Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Objective class",
                 "emotion")


def write_casme3_coding(path: PathLike, rows: Sequence[Mapping[str, Any]]) -> str:
  """Writes `cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx`: sheet `label`, every cell text."""
  table = [list(CASME3_HEADER)]
  for row in rows:
    table.append([str(row[k]) for k in ("subject", "filename", "onset", "apex", "offset",
                                        "action_units")] + [str(row.get("objective_class", 1)),
                                                            str(row["emotion"])])
  return write_sheet(path, "label", table)


def write_casme3_tree(root: PathLike, rows: Sequence[Mapping[str, Any]], *,
                      clip_release: bool = True, size: tuple[int, int] = (6, 8)) -> str:
  """A CAS(ME)^3 Part A tree and label sheet. `clip_release`: `Part_A_ME_clip/frame/
  spNO.1_a_355/355.jpg`; else full videos `part_A/data/spNO.1/a/color/355.jpg` with depth
  `.png` frames in `a/depth/`. Rows: subject, filename, onset, apex, offset, action_units,
  emotion, optional `frames`, `folder_subject` (case variant on disk; for videos the subject's
  first row names its folder) and `write=False`.
  """
  root = os.fspath(root)
  on_disk = {}  # one video folder per subject, named as in its first row
  for row in rows:
    on_disk.setdefault(row["subject"], row.get("folder_subject", row["subject"]))
  for row in rows:
    if not row.get("write", True):
      continue
    subject = row.get("folder_subject", row["subject"])
    if clip_release:
      folder = os.path.join(root, "Part_A_ME_clip", "frame",
                            f"{subject}_{row['filename']}_{row['onset']}")
      write_frames(folder, _span(row), "{}.jpg", size=size)
    else:
      video = os.path.join(root, "part_A", "data", on_disk[row["subject"]], row["filename"])
      write_frames(os.path.join(video, "color"), _span(row, 2), "{}.jpg", size=size)
      write_frames(os.path.join(video, "depth"), _span(row, 2), "{}.png", size=size, grey=True)
  write_casme3_coding(os.path.join(root, "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx"), rows)
  return root


def write_megc2019_csv(path: PathLike, rows: Iterable[Sequence[Any]]) -> str:
  """Writes `combined_3class_gt.csv`: no header, CRLF line ends, `database,subject,filename,class`."""
  os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
  with open(path, "w", newline="") as f:
    f.write("".join(",".join(str(v) for v in row) + "\r\n" for row in rows))
  return os.fspath(path)
