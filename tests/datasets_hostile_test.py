"""Bad and hostile database trees and annotation files (issue 23): each is a clear error naming
the file, row or frame and what to do, before any work, or a repair the report states.

Trees are written by `cmnet_jax.testing.fake_trees` in each database's real layout."""
import os

import pytest

from cmnet_jax import datasets
from cmnet_jax.datasets import writers
from cmnet_jax.testing import fake_trees

ROW = dict(subject=1, filename="EP02_01f", onset=46, apex=50, offset=54, action_units=12,
           emotion="happiness", objective_class=1)
ROW2 = dict(subject=2, filename="EP03_02", onset=5, apex=7, offset=9, action_units=4,
            emotion="disgust", objective_class=3)
CODING = "CASME2-coding-20190701.xlsx"


def _casme2(tmp_path, rows=(ROW, ROW2), **kwargs):
  return fake_trees.write_casme2_tree(tmp_path / "CASME2", list(rows), **kwargs)


def _coding_table(rows, header=writers.CASME2_HEADER):
  """The CASME II sheet's rows as written (header first), cells as `write_casme2_coding`."""
  body = [[writers.padded_text(r["subject"], 2), r["filename"], None, r["onset"], r["apex"],
           r["offset"], None, writers.excel_au(r["action_units"]), r["emotion"]] for r in rows]
  return [list(header)] + body


# -- item 2: a column headed twice ----------------------------------------------------------------

def test_a_known_column_headed_twice_is_refused_naming_both_columns(tmp_path):
  root = _casme2(tmp_path)
  table = _coding_table([ROW, ROW2])
  table[0].append("ApexFrame")            # column J: a second apex column
  for values in table[1:]:
    values.append(59)
  writers.write_sheet(os.path.join(root, CODING), "Sheet1", table)
  with pytest.raises(datasets.DatasetError) as e:
    datasets.load_index("casme2", root)
  message = str(e.value)
  assert CODING in message and "'ApexFrame' 2 times" in message
  assert "E (column 5) and J (column 10)" in message


def test_a_column_headed_twice_in_a_csv_is_refused_and_unread_ones_may_repeat(tmp_path):
  root = _casme2(tmp_path)
  os.remove(os.path.join(root, CODING))
  header = list(writers.CASME2_HEADER) + ["Notes", "Notes"]
  lines = [",".join("" if v is None else str(v) for v in header)]
  lines += [",".join(str(v) for v in ["01", "EP02_01f", "", 46, 50, 54, "", 12, "happiness",
                                      "a", "b"])]
  csv_path = os.path.join(root, "CASME2-coding-x.csv")
  with open(csv_path, "w") as f:
    f.write("\n".join(lines) + "\n")
  assert len(datasets.load_index("casme2", root).clips) == 1   # 'Notes' is not read
  with open(csv_path, "w") as f:
    f.write("\n".join([lines[0].replace("Estimated Emotion", "onsetframe")] + lines[1:]) + "\n")
  with pytest.raises(datasets.DatasetError, match=r"CASME2-coding-x.csv.*'OnsetFrame' 2 times, "
                     r"in D \(column 4\) and I \(column 9\)"):
    datasets.load_index("casme2", root)
