"""MEGC2019 composite reader: membership and labels from `combined_3class_gt.csv`.

`root` holds `CASME2/`, `SAMM/`, `SMIC/` (each laid out as its own reader expects) and the CSV
(no header, CRLF; rows `database,subject,filename,class`, class 0 negative, 1 positive,
2 surprise). The CSV is the source of truth for membership and labels; onset/apex/offset and
frames come from each database's own tree. SMIC ids `s01`/`s01_ne_01` name folders `s1`/`s1_ne_01`;
SAMM subjects are unpadded in the CSV. Records keep their source database in `dataset`.
"""
import dataclasses
import importlib
import os

from cmnet_jax.datasets import index as index_lib
from cmnet_jax.datasets import registry
from cmnet_jax.datasets import spreadsheet

NAME = "megc2019"
CSV_NAMES = ("combined_3class_gt.csv",)
CLASS_NAMES = ("negative", "positive", "surprise")   # CSV class 0, 1, 2
PARTS = {"casme2": "CASME2", "samm": "SAMM", "smic": "SMIC"}
DATABASE = registry.DatabaseInfo(
    name=NAME, title="the MEGC2019 composite (CASME II + SAMM + SMIC-HS)",
    schemes={"3class": [(c, (str(i),)) for i, c in enumerate(CLASS_NAMES)]},
    default_classes="3class", emotions=("0", "1", "2"),
    request="the owners of each of the three databases (see casme2, samm and smic), and take "
            "combined_3class_gt.csv from the MEGC2019 challenge materials "
            "(https://facial-micro-expressiongc.github.io/MEGC2019/)",
    layout=("CASME2/ (a CASME II folder, as for casme2)",
            "SAMM/ (a SAMM folder, as for samm: SAMM/SAMM/006/... and the coding xlsx)",
            "SMIC/ (a SMIC folder, as for smic)", "combined_3class_gt.csv"))


def _key(database: str, subject: str, clip: str, module) -> tuple[str, str, str]:
  subject = module.subject_name(subject) or subject
  if database == "smic":
    clip = module.clip_name(clip)
  return database, subject, clip


def read_membership(path: str) -> list[tuple[int, str, str, str, int]]:
  """(line number, database, subject, filename, class) of every CSV row, validated. A first
  line naming the columns (a header some users add, e.g. `database,subject,filename,class`) is
  not a row."""
  rows = spreadsheet.read_csv(path)
  out, first = [], True
  for n, row in enumerate(rows, start=1):
    if not any(c.strip() for c in row):
      continue
    cells = [c.strip() for c in row]
    if first and len(cells) == 4 and cells[0].lower() not in PARTS and not cells[3].isdigit():
      first = False
      continue   # a header line
    first = False
    if len(cells) != 4 or cells[0].lower() not in PARTS or cells[3] not in ("0", "1", "2"):
      raise index_lib.DatasetError(
          f"{path!r} line {n}: expected 'database,subject,filename,class' with database in "
          f"{tuple(PARTS)} and class 0/1/2, got {row!r}")
    out.append((n, cells[0].lower(), cells[1], cells[2], int(cells[3])))
  return out


def load(root: str, *, classes: str | None = None, annotation: str | None = None,
         casme2: str | None = None, samm: str | None = None, smic: str | None = None
         ) -> index_lib.DatasetIndex:
  """The composite index; `casme2=`, `samm=`, `smic=` override the part folders (relative to root).

  Rows of the CSV whose clip is not found in its database's tree are skipped with the reason.
  """
  class_names = DATABASE.class_names(classes)
  path = index_lib.find_annotation(root, annotation, CSV_NAMES, NAME)
  membership = read_membership(path)
  given = {"casme2": casme2, "samm": samm, "smic": smic}
  found, skipped, notes = {}, [], []
  for database in sorted({m[1] for m in membership}):
    part = os.path.join(root, given[database] or PARTS[database])
    if not os.path.isdir(part):
      raise index_lib.DatasetError(f"{NAME}: {path!r} lists {database} clips but the folder "
                                   f"{part!r} does not exist (pass {database}= to name it)")
    module = importlib.import_module(f"{__package__}.{database}")
    records, part_skipped, part_notes = module.read_records(part)
    found.update({_key(database, r.subject, r.clip_id, module): r for r in records})
    skipped += [index_lib.Skipped(f"{database} {s.item}", s.reason) for s in part_skipped]
    notes += part_notes
  clips, seen = [], {}
  for n, database, subject, filename, label in membership:
    module = importlib.import_module(f"{__package__}.{database}")
    key = _key(database, subject, filename, module)
    item = f"{database} {subject}/{filename} ({os.path.basename(path)} line {n})"
    if key in seen:
      first, first_label = seen[key]
      kept = "which is kept" if key in found else "(not found either)"
      skipped.append(index_lib.Skipped(item, (
          f"listed twice: also on line {first}, {kept}; " + (
              f"the classes differ: {label} ({class_names[label]}) on line {n}, {first_label} "
              f"({class_names[first_label]}) on line {first} (check which is right)"
              if label != first_label else "same class"))))
    elif key not in found:
      skipped.append(index_lib.Skipped(item, f"not found in the {database} tree as "
                                             f"{key[1]}/{key[2]}"))
    else:
      clips.append(dataclasses.replace(found[key], label=label))
    seen.setdefault(key, (n, label))
  return index_lib.make_index(NAME, root, class_names, clips, skipped, notes)
