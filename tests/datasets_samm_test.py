"""SAMM reader on fake trees: preamble rows, text subjects, varying padding, formulas, apex quirks."""
import os

import openpyxl
import pytest

from cmnet_jax import datasets
from cmnet_jax.testing import fake_trees

ROWS = [
    dict(subject="006", filename="006_1_2", onset=5562, apex=5566, offset=5570,
         action_units="4+7 ", emotion="Anger"),
    dict(subject="006", filename="006_1_3", onset=100, apex=99, offset=104,
         action_units="R12 or 14", emotion="Happiness"),
    dict(subject=7, filename="007_3_1", onset=870, apex=872, offset=874, action_units="1+2?",
         emotion="Surprise"),
    dict(subject="011", filename="011_2_1", onset=9, apex=10, offset=12, action_units="14/15",
         emotion="Contempt"),
    dict(subject="011", filename="011_2_3", onset=40, apex=43, offset=44, action_units="9",
         emotion="Disgust"),
    dict(subject="020", filename="020_4_1", onset=1, apex=120, offset=5, action_units="4",
         emotion="Other"),
    dict(subject="020", filename="020_5_1", onset=30, apex=31, offset=33, action_units="15",
         emotion="Sadness"),
    dict(subject="026", filename="026_1_1", onset=30, apex=31, offset=33, action_units="20",
         emotion="Fear"),
]
DIGITS = {"006": 5, "007": 4, "011": 5, "020": 4, "026": 4}


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
  return fake_trees.write_samm_tree(tmp_path_factory.mktemp("samm"), ROWS, digits=DIGITS)


def test_coding_sheet_layout(tree):
  sheet = openpyxl.load_workbook(os.path.join(tree, "SAMM_Micro_FACS_Codes_v2.xlsx"))["MICRO_ONLY"]
  assert sheet["A14"].value == "Subject" and sheet["A15"].value == "006"
  assert sheet["A15"].data_type == "s"
  assert str(sheet["G15"].value).startswith("=")       # Duration is a formula


def test_five_classes(tree):
  index = datasets.load_index("samm", tree)
  assert index.class_names == ("Anger", "Contempt", "Happiness", "Surprise", "Other")
  assert index.subjects == ("006", "007", "011", "020")
  assert index.class_counts() == dict(Anger=1, Contempt=1, Happiness=1, Surprise=1, Other=1)
  assert {s.item.split(" ")[0] for s in index.skipped} == {"011/011_2_3", "020/020_5_1",
                                                          "026/026_1_1"}
  clips = {c.clip_id: c for c in index.clips}
  anger = clips["006_1_2"]
  assert anger.frame_numbers == tuple(range(5562, 5571)) and anger.apex_index == 4
  assert os.path.basename(anger.frame_paths[0]) == "006_05562.jpg"
  assert os.path.basename(clips["007_3_1"].frame_paths[0]) == "007_0870.jpg"
  assert anger.action_units == "4+7" and clips["006_1_3"].action_units == "R12 or 14"
  assert clips["006_1_3"].apex == 102 and clips["020_4_1"].apex == 3   # apex outside -> middle
  assert sum("outside" in n for n in index.notes) == 2


def test_three_classes(tree):
  index = datasets.load_index("samm", tree, classes="3class")
  assert index.class_counts() == dict(negative=5, positive=1, surprise=1)
  assert [s.item.split(" ")[0] for s in index.skipped] == ["020/020_4_1"]  # Other dropped


def test_header_on_row_one_and_wrong_header(tmp_path):
  fake_trees.write_samm_tree(tmp_path, ROWS[:2], preamble=False)
  assert len(datasets.load_index("samm", tmp_path).clips) == 2
  path = tmp_path / "SAMM_Micro_FACS_Codes_v2.xlsx"
  book = openpyxl.load_workbook(path)
  book["MICRO_ONLY"]["A1"] = "Participant"
  book.save(path)
  with pytest.raises(datasets.DatasetError, match="no header row whose first cell is 'Subject'"):
    datasets.load_index("samm", tmp_path)
  book.create_sheet("Other")
  book["MICRO_ONLY"].title = "ALL"
  book.save(path)
  with pytest.raises(datasets.DatasetError, match=r"no sheet 'MICRO_ONLY'; its sheets are"):
    datasets.load_index("samm", tmp_path)


def test_unknown_emotion(tmp_path):
  fake_trees.write_samm_tree(tmp_path, [dict(ROWS[0], emotion="Angry")])
  with pytest.raises(datasets.DatasetError, match="006/006_1_2 has unknown emotion 'Angry'"):
    datasets.load_index("samm", tmp_path)
