"""SMIC-HS reader on fake trees: labels from paths, absolute frame numbers, non_micro, gaps."""
import os
import shutil

import pytest

from cmnet_jax import datasets
from cmnet_jax.testing import fake_trees

CLIPS = [
    dict(subject="s1", emotion="negative", clip="s1_ne_01", frames=range(559740, 559751)),
    dict(subject="s1", emotion="positive", clip="s1_po_02", frames=range(1000, 1004)),
    dict(subject="s2", emotion="surprise", clip="s2_sur_01", frames=range(99999998, 100000003)),
    dict(subject="s20", emotion="negative", clip="s20_ne_03",
         frames=[200000, 200001, 200003, 200004, 200005]),
]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
  return fake_trees.write_smic_tree(tmp_path_factory.mktemp("smic"), CLIPS)


def test_index(tree):
  index = datasets.load_index("smic", tree)
  assert index.class_names == ("negative", "positive", "surprise")
  assert index.subjects == ("s1", "s2", "s20")
  assert index.class_counts() == dict(negative=2, positive=1, surprise=1)
  assert index.skipped == ()
  clips = {c.clip_id: c for c in index.clips}
  first = clips["s1_ne_01"]
  assert (first.onset, first.apex, first.offset) == (559740, 559745, 559750)
  assert first.frame_paths[0] == os.path.join(
      tree, "SMIC_all_cropped", "HS", "s1", "micro", "negative", "s1_ne_01", "reg_image559740.bmp")
  long = clips["s2_sur_01"]   # frame numbers gain a digit inside the clip: numeric order
  assert long.frame_numbers == tuple(range(99999998, 100000003))
  assert long.apex == 100000000 and long.apex_index == 2
  gap = clips["s20_ne_03"]
  assert gap.frame_numbers == (200000, 200001, 200003, 200004, 200005) and gap.apex == 200003
  notes = "\n".join(index.notes)
  assert "no apex annotation" in notes and "s20/s20_ne_03: 1 frames missing" in notes
  assert "non_micro folders of 3 subjects" in notes
  assert all("non_micro" not in p for c in index.clips for p in c.frame_paths)


def test_raw_tree_and_errors(tmp_path):
  fake_trees.write_smic_tree(tmp_path / "raw", CLIPS[:2], cropped=False, non_micro=False)
  index = datasets.load_index("smic", tmp_path / "raw")
  assert os.path.basename(index.clips[0].frame_paths[0]) == "image559740.bmp"
  fake_trees.write_smic_tree(tmp_path / "bad", [dict(CLIPS[0], emotion="angry")])
  with pytest.raises(datasets.DatasetError, match="s1/s1_ne_01 has unknown emotion 'angry'"):
    datasets.load_index("smic", tmp_path / "bad")
  fake_trees.write_smic_tree(tmp_path / "empty", [dict(CLIPS[0], frames=[])])
  with pytest.raises(datasets.DatasetError, match="s1_ne_01' holds no frame images"):
    datasets.load_index("smic", tmp_path / "empty")
  with pytest.raises(datasets.DatasetError, match="unknown class scheme '5class'"):
    datasets.load_index("smic", tmp_path / "raw", classes="5class")


def test_a_copied_clip_folder_is_skipped_as_a_duplicate(tmp_path):
  root = fake_trees.write_smic_tree(tmp_path, CLIPS[:2])
  negative = os.path.join(root, "SMIC_all_cropped", "HS", "s1", "micro", "negative")
  shutil.copytree(os.path.join(negative, "s1_ne_01"), os.path.join(negative, "s1_ne_01 - Copy"))
  index = datasets.load_index("smic", root)
  assert [c.clip_id for c in index.clips] == ["s1_ne_01", "s1_po_02"]
  assert (f"skipped smic s1/s1_ne_01 - Copy: named as a copy of the clip folder 's1_ne_01' "
          f"beside it in {negative!r}; the clip counts once") in index.report()
  shutil.rmtree(os.path.join(negative, "s1_ne_01"))   # the copy alone: its name cannot be written
  with pytest.raises(datasets.DatasetError, match="clip 's1'/'s1_ne_01 - Copy' .* white space"):
    datasets.load_index("smic", root)
  shutil.move(os.path.join(negative, "s1_ne_01 - Copy"), os.path.join(negative, "s1_ne_01"))
  shutil.copytree(os.path.join(negative, "s1_ne_01"),
                  os.path.join(root, "SMIC_all_cropped", "HS", "s1", "micro", "positive", "s1_ne_01"))
  with pytest.raises(datasets.DatasetError, match="s1/s1_ne_01 is found twice"):
    datasets.load_index("smic", root)
