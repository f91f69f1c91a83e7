"""CASME II reader on fake trees in the real layout (written by cmnet_jax.testing.fake_trees)."""
import io
import os

import numpy as np
import openpyxl
import pytest

from cmnet_jax import datasets
from cmnet_jax.testing import fake_trees

ROWS = [
    dict(subject=1, filename="EP02_01f", onset=46, apex=50, offset=54, action_units=12,
         emotion="happiness", objective_class=1),
    dict(subject=1, filename="EP09f", onset=10, apex="/", offset=16, action_units="6+12",
         emotion="happiness", objective_class=1),
    dict(subject=2, filename="EP02_01f", onset=5, apex=7, offset=9, action_units="4+7+L10",
         emotion="disgust", objective_class=3),
    dict(subject=2, filename="EP06_02_01", onset=20, apex=20, offset=24, action_units="R2+15",
         emotion="repression", objective_class=7),
    dict(subject=3, filename="EP01_2", onset=100, apex=104, offset=104, action_units="1+2",
         emotion="surprise", objective_class=5, frames=[100, 101, 103, 104]),
    dict(subject=3, filename="EP03_02", onset=30, apex=31, offset=33, action_units=4,
         emotion="others", objective_class=7),
    dict(subject=4, filename="EP05_03", onset=1, apex=2, offset=3, action_units=4,
         emotion="fear", objective_class=4),
    dict(subject=4, filename="EP07_01", onset=1, apex=2, offset=3, action_units=15,
         emotion="sadness", objective_class=6),
    dict(subject=5, filename="EP08_01", onset=1, apex=2, offset=3, action_units=12,
         emotion="happiness", objective_class=1, write=False),
    dict(subject=5, filename="EP10_01", onset=40, apex=99, offset=44, action_units="9",
         emotion="disgust", objective_class=3),
    dict(subject=1, filename="EP02_01f", onset=46, apex=50, offset=54, action_units=12,
         emotion="happiness", objective_class=1),
]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
  return fake_trees.write_casme2_tree(tmp_path_factory.mktemp("casme2"), ROWS)


def test_coding_sheet_has_the_real_cell_types(tree):
  sheet = openpyxl.load_workbook(os.path.join(tree, "CASME2-coding-20190701.xlsx"))["Sheet1"]
  header = [c.value for c in sheet[1]]
  assert header == ["Subject", "Filename", None, "OnsetFrame", "ApexFrame", "OffsetFrame", None,
                    "Action Units", "Estimated Emotion", "Objective Classes"]
  assert sheet["A2"].data_type == "s" and sheet["A2"].value == "01"
  assert sheet["E3"].value == "/"
  assert sheet["H2"].value == 12 and sheet["H4"].value == "4+7+L10"


def test_five_classes(tree):
  index = datasets.load_index("casme2", tree)
  assert index.class_names == ("happiness", "disgust", "repression", "surprise", "others")
  assert index.subjects == ("sub01", "sub02", "sub03", "sub05")
  assert index.class_counts() == dict(happiness=2, disgust=2, repression=1, surprise=1, others=1)
  keys = [(c.subject, c.clip_id) for c in index.clips]
  assert keys == [("sub01", "EP02_01f"), ("sub01", "EP09f"), ("sub02", "EP02_01f"),
                  ("sub02", "EP06_02_01"), ("sub03", "EP01_2"), ("sub03", "EP03_02"),
                  ("sub05", "EP10_01")]
  assert [c.label for c in index.clips] == [0, 0, 1, 2, 3, 4, 1]
  assert index.clips[0].action_units == "12" and index.clips[2].action_units == "4+7+L10"
  reasons = {s.item.split(" ")[0]: s.reason for s in index.skipped}
  assert set(reasons) == {"sub04/EP05_03", "sub04/EP07_01", "sub05/EP08_01", "sub01/EP02_01f"}
  assert "'fear' is not in the 5class" in reasons["sub04/EP05_03"]
  assert "'sadness'" in reasons["sub04/EP07_01"]
  assert "clip folder not found" in reasons["sub05/EP08_01"]
  assert "duplicate" in reasons["sub01/EP02_01f"]


def test_frames_and_apex_quirks(tree):
  clips = {(c.subject, c.clip_id): c for c in datasets.load_index("casme2", tree).clips}
  first = clips["sub01", "EP02_01f"]
  assert first.frame_paths == tuple(
      os.path.join(tree, "Cropped", "sub01", "EP02_01f", f"reg_img{n}.jpg") for n in range(46, 55))
  assert (first.onset, first.apex, first.offset, first.apex_index) == (46, 50, 54, 4)
  assert clips["sub01", "EP09f"].apex == 13          # '/' -> middle frame (10 + 16) // 2
  assert clips["sub05", "EP10_01"].apex == 42        # 99 outside [40, 44] -> middle
  assert clips["sub02", "EP06_02_01"].apex_index == 0
  gap = clips["sub03", "EP01_2"]
  assert gap.frame_numbers == (100, 101, 103, 104) and gap.apex_index == 3
  notes = "\n".join(datasets.load_index("casme2", tree).notes)
  assert "EP09f: apex '/' not coded" in notes and "apex 99 outside [40, 44]" in notes
  assert "EP01_2: 1 of 5 frames missing" in notes


def test_three_classes_follow_the_megc_mapping(tree):
  index = datasets.load_index("casme2", tree, classes="3class")
  assert index.class_names == ("negative", "positive", "surprise")
  labels = {c.clip_id + c.subject: index.class_names[c.label] for c in index.clips}
  assert labels == {"EP02_01fsub01": "positive", "EP09fsub01": "positive",
                    "EP02_01fsub02": "negative", "EP06_02_01sub02": "negative",
                    "EP01_2sub03": "surprise", "EP10_01sub05": "negative"}
  assert any("'others' is not in the 3class" in s.reason for s in index.skipped)


def test_raw_tree_renamed_subjects_and_old_coding(tmp_path):
  rows = [dict(r, objective_class=None) for r in ROWS[:3]]
  fake_trees.write_casme2_tree(tmp_path, rows, frames_folder="CASME2-RAW", prefix="img",
                          subject_folder="{:d}", margin=3,
                          coding_name="CASME2-coding-20140508.xlsx", objective_class=False)
  index = datasets.load_index("casme2", tmp_path)
  first = index.clips[0]
  assert os.path.dirname(first.frame_paths[0]) == os.path.join(tmp_path, "CASME2-RAW", "1",
                                                               "EP02_01f")
  assert first.frame_numbers == tuple(range(46, 55))  # neutral frames 43-45, 55-57 left out


def test_cropped_updated_and_explicit_paths(tmp_path):
  fake_trees.write_casme2_tree(tmp_path, ROWS[:2], frames_folder="Cropped-updated/Cropped")
  os.rename(tmp_path / "CASME2-coding-20190701.xlsx", tmp_path / "codes.xlsx")
  with pytest.raises(datasets.DatasetError, match="CASME2-coding-20190701.xlsx, CASME2-coding"):
    datasets.load_index("casme2", tmp_path)
  index = datasets.load_index("casme2", tmp_path, annotation="codes.xlsx")
  assert "Cropped-updated" in index.clips[0].frame_paths[0]
  index = datasets.load_index("casme2", tmp_path, annotation="codes.xlsx",
                              frames="Cropped-updated/Cropped")
  assert len(index.clips) == 2


def test_fatal_errors_name_the_file_and_what_was_expected(tmp_path):
  with pytest.raises(datasets.DatasetError, match="does not exist"):
    datasets.load_index("casme2", tmp_path / "nowhere")
  fake_trees.write_casme2_tree(tmp_path / "a", [dict(ROWS[0], emotion="happy")])
  with pytest.raises(datasets.DatasetError, match=r"sub01/EP02_01f has unknown emotion 'happy'"):
    datasets.load_index("casme2", tmp_path / "a")
  fake_trees.write_casme2_tree(tmp_path / "b", ROWS[:1])
  book = openpyxl.load_workbook(tmp_path / "b" / "CASME2-coding-20190701.xlsx")
  book["Sheet1"]["D1"] = "Onset"
  book.save(tmp_path / "b" / "CASME2-coding-20190701.xlsx")
  with pytest.raises(datasets.DatasetError, match=r"row 1 lacks columns \['OnsetFrame'\]"):
    datasets.load_index("casme2", tmp_path / "b")
  (tmp_path / "b" / "CASME2-coding-20190701.xlsx").write_bytes(b"not a zip")
  with pytest.raises(datasets.DatasetError, match="cannot read spreadsheet .*20190701.xlsx"):
    datasets.load_index("casme2", tmp_path / "b")
  fake_trees.write_casme2_tree(tmp_path / "c", [dict(ROWS[0], frames=[1, 2])])
  with pytest.raises(datasets.DatasetError, match=r"none of frames 46..54 .*numbered 1..2"):
    datasets.load_index("casme2", tmp_path / "c")
  fake_trees.write_casme2_tree(tmp_path / "d", [dict(ROWS[0], frames=[])])
  with pytest.raises(datasets.DatasetError, match="EP02_01f' holds no frame images"):
    datasets.load_index("casme2", tmp_path / "d")
  os.makedirs(tmp_path / "e")
  fake_trees.write_casme2_coding(tmp_path / "e" / "CASME2-coding-20190701.xlsx", ROWS[:1])
  with pytest.raises(datasets.DatasetError, match=r"no frames folder .*'Cropped'"):
    datasets.load_index("casme2", tmp_path / "e")


def test_report_prints_once(tree):
  index = datasets.load_index("casme2", tree)
  out = io.StringIO()
  assert index.print_report(out) and not index.print_report(out)
  text = out.getvalue()
  assert text.count("casme2 at") == 1 and "skipped sub05/EP08_01" in text and "repaired:" in text


def test_two_files_with_one_frame_number_are_an_error_naming_both(tmp_path):
  fake_trees.write_casme2_tree(tmp_path, ROWS[:1])            # EP02_01f: reg_img46 .. reg_img54
  folder = tmp_path / "Cropped" / "sub01" / "EP02_01f"
  fake_trees.write_frames(folder, [48], "reg_img{:03d}.jpg")  # reg_img048.jpg beside reg_img48.jpg
  with pytest.raises(datasets.DatasetError, match=r"sub01/EP02_01f: frame 48 is given by 2 files "
                                                  r".*'reg_img048.jpg', 'reg_img48.jpg'"):
    datasets.load_index("casme2", tmp_path)
  (folder / "reg_img048.jpg").unlink()
  fake_trees.write_frames(folder, [60], "reg_img{:03d}.jpg")  # a pair outside onset..offset,
  fake_trees.write_frames(folder, [60], "reg_img{}.jpg")      # never used: no error
  (folder / "._reg_img47.jpg").write_bytes(b"\0\5\26\7")       # macOS metadata is not a frame
  clip = datasets.load_index("casme2", tmp_path).clips[0]
  assert clip.frame_numbers == tuple(range(46, 55))
  assert os.path.basename(clip.frame_paths[1]) == "reg_img47.jpg"


def test_a_frame_of_another_size_is_left_out_with_a_note(tmp_path):
  fake_trees.write_casme2_tree(tmp_path, ROWS[:1], size=(8, 8))
  folder = tmp_path / "Cropped" / "sub01" / "EP02_01f"
  fake_trees.write_frames(folder, [51], "reg_img{}.jpg", size=(25, 40))   # 40x25 among 8x8
  index = datasets.load_index("casme2", tmp_path)
  clip = index.clips[0]
  assert clip.frame_numbers == (46, 47, 48, 49, 50, 52, 53, 54)
  assert "repaired: casme2 sub01/EP02_01f: 1 frame(s) of another size than the clip's other 8 " \
         "(8x8): 51 (reg_img51.jpg, 40x25); left out" in index.report()
  frames, _ = datasets.load_clip(clip, num_frames=9, image_size=8)
  assert {int(v) for v in frames[:, 4, 4, 0]} <= {fake_trees.frame_value(n) + d
                                                  for n in clip.frame_numbers for d in (-1, 0, 1)}


def test_16_bit_png_frames_are_scaled_to_8_bits_not_clipped(tmp_path):
  fake_trees.write_casme2_tree(tmp_path, [dict(ROWS[0], write=False)])
  folder = tmp_path / "Cropped" / "sub01" / "EP02_01f"
  levels = {n: (np.arange(16).reshape(4, 4) * 17 + n) % 256 for n in range(46, 55)}
  for n, level in levels.items():   # 16-bit value 257 k is exactly the 8-bit level k
    fake_trees.write_image(folder / f"reg_img{n}.png", (level * 257).astype(np.uint16))
  clip = datasets.load_index("casme2", tmp_path).clips[0]
  frames, _ = datasets.load_clip(clip, num_frames=9, image_size=4)
  for t, n in enumerate(range(46, 55)):
    np.testing.assert_array_equal(frames[t], np.repeat(levels[n][..., None], 3, axis=-1))
  assert frames.max() == 255 and frames.min() == 0
