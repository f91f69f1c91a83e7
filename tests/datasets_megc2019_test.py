"""MEGC2019 composite: membership and labels from the CSV, id translation, LOSO over 3 databases."""
import os

import pytest

from cmnet_jax import datasets
from cmnet_jax.testing import fake_trees

CASME2 = [
    dict(subject=1, filename="EP02_01f", onset=46, apex=50, offset=54, action_units=12,
         emotion="happiness", objective_class=1),
    dict(subject=1, filename="EP03_02", onset=1, apex=2, offset=4, action_units=4,
         emotion="repression", objective_class=7),
    dict(subject=2, filename="EP02_01f", onset=5, apex=7, offset=9, action_units="4+7+L10",
         emotion="others", objective_class=7),
]
SAMM = [
    dict(subject="006", filename="006_1_2", onset=5562, apex=5566, offset=5570,
         action_units="4+7", emotion="Contempt"),
    dict(subject="037", filename="037_3_1", onset=10, apex=12, offset=14, action_units="1+2",
         emotion="Surprise"),
]
SMIC = [dict(subject="s1", emotion="negative", clip="s1_ne_01", frames=range(559740, 559745)),
        dict(subject="s3", emotion="positive", clip="s3_po_05", frames=range(20, 25))]
CSV = [("casme2", "sub01", "EP02_01f", 1), ("casme2", "sub01", "EP03_02", 0),
       ("smic", "s01", "s01_ne_01", 0), ("smic", "s03", "s03_po_05", 1),
       ("smic", "s04", "s04_sur_01", 2),
       ("samm", "6", "006_1_2", 0), ("samm", "37", "037_3_1", 2)]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("megc"))
  fake_trees.write_casme2_tree(os.path.join(root, "CASME2"), CASME2)
  fake_trees.write_samm_tree(os.path.join(root, "SAMM"), SAMM)
  fake_trees.write_smic_tree(os.path.join(root, "SMIC"), SMIC)
  fake_trees.write_megc2019_csv(os.path.join(root, "combined_3class_gt.csv"), CSV)
  return root


def test_csv_is_crlf_without_header(tree):
  data = open(os.path.join(tree, "combined_3class_gt.csv"), "rb").read()
  assert data.startswith(b"casme2,sub01,EP02_01f,1\r\n") and data.count(b"\r\n") == len(CSV)


def test_membership_and_labels_come_from_the_csv(tree):
  index = datasets.load_index("megc2019", tree)
  assert index.class_names == ("negative", "positive", "surprise")
  got = [(c.dataset, c.subject, c.clip_id, c.label) for c in index.clips]
  assert got == [("casme2", "sub01", "EP02_01f", 1), ("casme2", "sub01", "EP03_02", 0),
                 ("smic", "s1", "s1_ne_01", 0), ("smic", "s3", "s3_po_05", 1),
                 ("samm", "006", "006_1_2", 0), ("samm", "037", "037_3_1", 2)]
  assert index.clips[4].emotion == "Contempt" and index.clips[4].apex == 5566
  missing = [s for s in index.skipped if "not found" in s.reason]
  assert [s.item.split(" (")[0] for s in missing] == ["smic s04/s04_sur_01"]
  assert "line 5" in missing[0].item
  folds = datasets.loso_folds(index)
  assert [f.test_subject for f in folds] == ["006", "037", "s1", "s3", "sub01"]


def test_part_overrides_and_bad_rows(tree, tmp_path):
  os.symlink(os.path.join(tree, "SAMM"), tmp_path / "samm_v2")
  fake_trees.write_megc2019_csv(tmp_path / "combined_3class_gt.csv", [("samm", "6", "006_1_2", 0)])
  index = datasets.load_index("megc2019", tmp_path, samm="samm_v2")
  assert [c.clip_id for c in index.clips] == ["006_1_2"]
  with pytest.raises(datasets.DatasetError, match=r"lists samm clips but the folder .*SAMM'"):
    datasets.load_index("megc2019", tmp_path)
  fake_trees.write_megc2019_csv(tmp_path / "combined_3class_gt.csv", [("samm", "6", "006_1_2", 3)])
  with pytest.raises(datasets.DatasetError, match=r"line 1: expected 'database,subject"):
    datasets.load_index("megc2019", tmp_path, samm="samm_v2")
  os.remove(tmp_path / "combined_3class_gt.csv")
  with pytest.raises(datasets.DatasetError, match="looked for combined_3class_gt.csv"):
    datasets.load_index("megc2019", tmp_path, samm="samm_v2")
