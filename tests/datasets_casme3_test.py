"""CAS(ME)^3 Part A reader: all-text cells, shared (Subject, Filename), broken rows, both layouts."""
import os

import openpyxl
import pytest

from cmnet_jax import datasets
from cmnet_jax.testing import fake_trees

ROWS = [
    dict(subject="spNO.1", filename="a", onset=355, apex=358, offset=361, action_units="L4+R12",
         emotion="happy", folder_subject="SPNO.1"),
    dict(subject="spNO.1", filename="a", onset=400, apex=401, offset=404, action_units="4",
         emotion="disgust"),
    dict(subject="spNO.1", filename="b", onset=10, apex=10, offset=14, action_units="1+2",
         emotion="surprise"),
    dict(subject="spNO.2", filename="c", onset=50, apex=52, offset=54, action_units="17",
         emotion="Others"),
    dict(subject="spNO.2", filename="d", onset=60, apex=62, offset=64, action_units="15",
         emotion="sad"),
    dict(subject="spNO.3", filename="e", onset=70, apex=72, offset=0, action_units="4",
         emotion="anger", write=False),
    dict(subject="spNO.3", filename="f", onset=80, apex=75, offset=85, action_units="4",
         emotion="fear", write=False),
    dict(subject="spNO.3", filename="g", onset=95, apex=96, offset=90, action_units="4",
         emotion="fear", write=False),
    dict(subject="spNO.4", filename="h", onset=5, apex=6, offset=8, action_units="4",
         emotion="fear"),
    dict(subject="spNO.4", filename="h", onset=5, apex=6, offset=8, action_units="4",
         emotion="fear"),
]


@pytest.fixture(scope="module", params=[True, False], ids=["clip_release", "videos"])
def tree(request, tmp_path_factory):
  root = tmp_path_factory.mktemp("casme3")
  return fake_trees.write_casme3_tree(root, ROWS, clip_release=request.param)


def test_cells_are_text(tree):
  sheet = openpyxl.load_workbook(
      os.path.join(tree, "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx"))["label"]
  assert {c.data_type for row in sheet.iter_rows() for c in row} == {"s"}


def test_seven_classes(tree):
  index = datasets.load_index("casme3", tree)
  assert index.subjects == ("spNO.1", "spNO.2", "spNO.4")
  assert [c.clip_id for c in index.clips] == ["a_355", "a_400", "b_10", "c_50", "d_60", "h_5"]
  assert index.class_counts() == dict(anger=0, disgust=1, fear=1, happy=1, sad=1, surprise=1,
                                      others=1)
  reasons = [s.reason for s in index.skipped]
  assert reasons[0] == "broken row: offset 0"
  assert reasons[1] == "broken row: apex 75 outside [80, 85]"
  assert reasons[2] == "broken row: onset 95 after offset 90"
  assert reasons[3] == "duplicate (Subject, Filename, Onset) key" and len(reasons) == 4
  first = index.clips[0]
  assert first.frame_numbers == tuple(range(355, 362)) and first.apex_index == 3
  assert all(p.endswith(".jpg") for c in index.clips for p in c.frame_paths)


def test_four_and_three_classes(tree):
  four = datasets.load_index("casme3", tree, classes="4class")
  assert four.class_counts() == dict(negative=3, positive=1, surprise=1, others=1)
  three = datasets.load_index("casme3", tree, classes="3class")
  assert three.class_counts() == dict(negative=3, positive=1, surprise=1)
  assert "'Others' is not in the 3class" in three.skipped[-1].reason
