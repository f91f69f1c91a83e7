"""TFDS builders: prepare small fake trees of every database as array_record, read back in NumPy.

tensorflow-datasets is installed without TensorFlow: `tfds.testing.DatasetBuilderTestCase` needs
TensorFlow (its setUp calls tf.executing_eagerly), so the builders are exercised directly, and
`tfds.testing.mock_data` (which works without TensorFlow) is used for the data-source path.
"""
import os
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from cmnet_jax import datasets
from cmnet_jax.datasets import frames, synthetic
from cmnet_jax.testing import fake_trees
from cmnet_jax.datasets import tfds as mer_tfds
from configs import common

T, SIZE = 5, 16
CASME2 = [
    dict(subject=1, filename="EP02_01f", onset=46, apex=50, offset=54, action_units=12,
         emotion="happiness", objective_class=1),
    dict(subject=1, filename="EP03_02", onset=3, apex="/", offset=9, action_units="4+L10",
         emotion="disgust", objective_class=5),
    dict(subject=2, filename="EP02_01f", onset=5, apex=7, offset=12, action_units=4,
         emotion="others", objective_class=7),
    dict(subject=2, filename="EP09_01", onset=20, apex=22, offset=30, action_units=4,
         emotion="fear", objective_class=6),
]
SAMM = [dict(subject="006", filename="006_1_2", onset=5562, apex=5566, offset=5570,
             action_units="4+7", emotion="Contempt"),
        dict(subject="037", filename="037_3_1", onset=10, apex=12, offset=14, action_units="1+2",
             emotion="Surprise")]
SMIC = [dict(subject="s1", emotion="negative", clip="s1_ne_01", frames=range(559740, 559748)),
        dict(subject="s3", emotion="positive", clip="s3_po_05", frames=range(20, 25))]
CASME3 = [dict(subject="spNO.1", filename="a", onset=355, apex=358, offset=362,
               action_units="4", emotion="disgust"),
          dict(subject="spNO.2", filename="b", onset=10, apex=10, offset=14, action_units="1+2",
               emotion="surprise")]
MEGC = [("casme2", "sub01", "EP02_01f", 1), ("smic", "s01", "s01_ne_01", 0),
        ("samm", "6", "006_1_2", 0), ("samm", "37", "037_3_1", 2)]


def write_tree(name, root):
  root = str(root)
  if name == "casme2":
    fake_trees.write_casme2_tree(root, CASME2)
  elif name == "samm":
    fake_trees.write_samm_tree(root, SAMM)
  elif name == "smic":
    fake_trees.write_smic_tree(root, SMIC)
  elif name == "casme3":
    fake_trees.write_casme3_tree(root, CASME3)
  else:
    fake_trees.write_casme2_tree(os.path.join(root, "CASME2"), CASME2)
    fake_trees.write_samm_tree(os.path.join(root, "SAMM"), SAMM)
    fake_trees.write_smic_tree(os.path.join(root, "SMIC"), SMIC)
    fake_trees.write_megc2019_csv(os.path.join(root, "combined_3class_gt.csv"), MEGC)
  return root


def prepare(builder_cls, data_dir, manual_dir=None, **kwargs):
  builder = builder_cls(data_dir=str(data_dir), file_format="array_record", **kwargs)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=manual_dir and str(manual_dir)))
  return builder


@pytest.mark.parametrize("name", ["casme2", "samm", "smic", "casme3", "megc2019"])
def test_database_builder_matches_reader(name, tmp_path):
  root = write_tree(name, tmp_path / "manual")
  builder = prepare(mer_tfds.BUILDERS[name], tmp_path / "data", root, num_frames=T,
                    image_size=SIZE)
  got = mer_tfds.read_numpy(builder.as_data_source()["train"])
  index = datasets.load_index(name, root)
  assert builder.info.features["label"].names == list(index.class_names)
  assert got["frames"].shape == (len(index.clips), T, SIZE, SIZE, 3)
  assert got["frames"].dtype == np.uint8 and (got["apex_index"] == T // 2).all()
  rows = {(d, s, c): i for i, (d, s, c) in enumerate(zip(got["dataset"], got["subject"],
                                                         got["clip_id"]))}
  assert sorted(rows) == sorted((r.dataset, r.subject, r.clip_id) for r in index.clips)
  for record in index.clips:
    i = rows[(record.dataset, record.subject, record.clip_id)]
    assert got["label"][i] == record.label
    positions, _ = frames.sample_frame_indices(len(record.frame_paths), record.apex_index, T)
    numbers = [frames.frame_number(record.frame_paths[p]) for p in positions]
    # The fake frames are flat images whose grey level encodes their frame number.
    expected = np.array([fake_trees.frame_value(n) for n in numbers], float)[:, None, None, None]
    np.testing.assert_allclose(got["frames"][i], np.broadcast_to(expected, got["frames"][i].shape),
                               atol=2)


@pytest.fixture(scope="module")
def synthetic_setup(tmp_path_factory):
  config = common.synthetic_config()
  config.num_subjects, config.clips_per_class, config.image_size = 2, 1, 24
  config.min_frames, config.max_frames = 8, 12
  data_dir = tmp_path_factory.mktemp("tfds_syn")
  builder = prepare(mer_tfds.Synthetic, data_dir, synthetic_config=config, num_frames=T)
  return config, data_dir, builder


def test_synthetic_builder_carries_true_intensity(synthetic_setup):
  config, data_dir, builder = synthetic_setup
  got = mer_tfds.read_numpy(builder.as_data_source()["train"])
  tree = os.path.join(data_dir, "downloads",
                      f"cmnet_synthetic_{mer_tfds.Synthetic.settings_hash(config)}")
  index = datasets.load_index("synthetic", tree)
  truth = synthetic.load_true_intensity(tree)
  assert len(got["label"]) == len(index.clips) == 10
  assert got["intensity"].shape == (10, T) and got["intensity"].dtype == np.float32
  assert got["frames"].shape == (10, T, 24, 24, 3)
  by_key = {(s, c): i for i, (s, c) in enumerate(zip(got["subject"], got["clip_id"]))}
  for record in index.clips:
    i = by_key[(record.subject, record.clip_id)]
    clip, apex = frames.load_clip(record, num_frames=T, image_size=24)
    np.testing.assert_array_equal(got["frames"][i], clip)
    levels = truth[(record.subject[3:], record.clip_id)]
    positions, _ = frames.sample_frame_indices(len(record.frame_paths), record.apex_index, T)
    np.testing.assert_allclose(got["intensity"][i],
                               [levels[record.onset + p] for p in positions], atol=1e-6)
    assert got["intensity"][i][apex] == 1.0
    assert builder.info.features["label"].names[got["label"][i]] == record.emotion


def test_prepared_data_reads_back_by_name_and_directory_without_tensorflow(synthetic_setup):
  config, data_dir, builder = synthetic_setup
  by_dir = tfds.builder_from_directory(builder.data_dir).as_data_source()["train"]
  by_name = tfds.data_source(f"cmnet_synthetic/{builder.builder_config.name}",
                             data_dir=str(data_dir))["train"]
  a, b = mer_tfds.read_numpy(by_dir), mer_tfds.read_numpy(by_name)
  np.testing.assert_array_equal(a["frames"], b["frames"])
  assert "tensorflow" not in sys.modules
  other = dict(config.to_dict(), amplitude_px=2.0)
  assert (mer_tfds.Synthetic.config_for(other, T).name != builder.builder_config.name
          and builder.builder_config.name.startswith(f"default_t{T}_s24_"))


def test_synthetic_builder_needs_settings_to_generate(tmp_path):
  builder = mer_tfds.Synthetic(config=mer_tfds.mer_config(T, SIZE), data_dir=str(tmp_path))
  with pytest.raises(ValueError, match="synthetic_config"):
    builder.download_and_prepare()


def test_missing_manual_data_shows_instructions(tmp_path):
  with pytest.raises(AssertionError, match="Request CASME II"):
    prepare(mer_tfds.Casme2, tmp_path / "data", tmp_path / "empty", num_frames=T)
  for name, cls in mer_tfds.BUILDERS.items():
    if name != "synthetic":
      text = cls.MANUAL_DOWNLOAD_INSTRUCTIONS
      assert "manual" in text and "Request" in text


def test_mock_data_gives_examples_of_the_declared_features():
  with tfds.testing.mock_data(num_examples=3, policy=tfds.testing.MockPolicy.USE_CODE):
    source = tfds.data_source("cmnet_samm/default_t9_s64", split="train")
    assert len(source) == 3
    example = source[0]
  assert example["frames"].shape == (9, 64, 64, 3) and example["frames"].dtype == np.uint8
  assert 0 <= example["label"] < 5 and set(example) == {
      "frames", "label", "subject", "clip_id", "dataset", "apex_index"}


def test_unknown_class_scheme_is_rejected():
  with pytest.raises(ValueError, match="unknown class scheme"):
    mer_tfds.Casme2(num_frames=T, classes="9class").info


def test_synthetic_examples_are_named_synthetic_not_casme2(synthetic_setup):
  """The synthetic set is its own database (registry name 'synthetic'), not CASME II."""
  _, _, builder = synthetic_setup
  got = mer_tfds.read_numpy(builder.as_data_source()["train"])
  assert set(got["dataset"]) == {"synthetic"}
  assert "synthetic" not in mer_tfds.DATABASE_BUILDERS  # no manual-download builder for it
