"""The decoded-clip cache follows the data, not only the config (issue 15): sorted or deleted
annotation rows and changed frame files are decoded again, a damaged cache is rebuilt; the
synthetic set is a database of its own whose class schemes apply."""
import os
import warnings

import numpy as np
import pytest

from cmnet_jax import input_pipeline
from cmnet_jax import workdir as workdir_lib
from cmnet_jax.datasets import casme2 as casme2_reader
from cmnet_jax.datasets import writers
from cmnet_jax.testing import fake_trees
from configs import casme2
from configs import tiny

ROWS = [
    dict(subject=1, filename="EP02_01f", onset=46, apex=50, offset=54, action_units=12,
         emotion="happiness", objective_class=1),
    dict(subject=1, filename="EP03_02", onset=3, apex=6, offset=9, action_units="4+L10",
         emotion="disgust", objective_class=5),
    dict(subject=2, filename="EP02_01f", onset=5, apex=7, offset=12, action_units=4,
         emotion="others", objective_class=7),
    dict(subject=2, filename="EP09_01", onset=20, apex=22, offset=30, action_units=14,
         emotion="repression", objective_class=7),
]


def _config(root):
  config = casme2.get_config("quick")
  with config.unlocked():
    config.data.root, config.data.num_frames, config.data.image_size = str(root), 5, 8
    config.data.train_jitter_copies = 2
  return config


def _load(config, workdir):
  """(ClipData, {'subject/clip': eval frames})."""
  data = input_pipeline.load(config, workdir)
  return data, {f"{s}/{c}": f for s, c, f in zip(data.subjects, data.clip_ids, data.eval_frames)}


@pytest.fixture
def tree(tmp_path):
  return fake_trees.write_casme2_tree(tmp_path / "CASME2", ROWS)


def _coding(root):
  return os.path.join(root, casme2_reader.ANNOTATION_NAMES[0])


@pytest.mark.parametrize("edit", ["sort", "delete"])
def test_edited_annotation_is_decoded_again_not_read_from_the_cache(tree, tmp_path, edit):
  config = _config(tree)
  data, frames = _load(config, tmp_path / "run")
  assert len(data.labels) == 4
  rows = list(reversed(ROWS)) if edit == "sort" else ROWS[1:]
  writers.write_casme2_coding(_coding(tree), rows)
  again, again_frames = _load(config, tmp_path / "run")
  fresh, fresh_frames = _load(config, tmp_path / "fresh")
  assert list(again.clip_ids) == list(fresh.clip_ids) == [r["filename"] for r in rows]
  np.testing.assert_array_equal(again.eval_frames, fresh.eval_frames)
  np.testing.assert_array_equal(again.labels, fresh.labels)
  for key, value in again_frames.items():  # each clip still has its own frames
    np.testing.assert_array_equal(value, frames[key])
  caches = workdir_lib.Workdir(tmp_path / "run").clip_caches()
  assert len(caches) == 1  # the cache of the old rows is gone


def test_a_changed_frame_file_is_decoded_again(tree, tmp_path):
  config = _config(tree)
  data, _ = _load(config, tmp_path / "run")
  onset = os.path.join(tree, "Cropped", "sub01", "EP02_01f", "reg_img46.jpg")
  fake_trees.write_image(onset, np.full((6, 8, 3), 250, np.uint8))
  again, _ = _load(config, tmp_path / "run")
  assert abs(int(again.eval_frames[0, 0].mean()) - 250) <= 2
  assert abs(int(data.eval_frames[0, 0].mean()) - fake_trees.frame_value(46)) <= 2


def test_a_truncated_cache_is_rebuilt_with_a_warning(tree, tmp_path):
  config = _config(tree)
  data, _ = _load(config, tmp_path / "run")
  (cache,) = workdir_lib.Workdir(tmp_path / "run").clip_caches()
  cache.write_bytes(cache.read_bytes()[:200])
  with pytest.warns(RuntimeWarning, match=f"{cache}.*decoding the clips again"):
    again, _ = _load(config, tmp_path / "run")
  np.testing.assert_array_equal(again.train_frames, data.train_frames)
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    _load(config, tmp_path / "run")  # rebuilt: read without a warning


def test_synthetic_data_honour_the_class_scheme(tmp_path):
  config = tiny.get_config()
  with config.unlocked():
    config.data.classes = "3class"
  source = input_pipeline.read_source(config, workdir_lib.Workdir(tmp_path))
  assert source.index.name == "synthetic"
  assert source.index.class_names == ("negative", "positive", "surprise")
  assert {c.dataset for c in source.index.clips} == {"synthetic"}
  assert len(source.index.clips) == 12  # 'others' is not in the 3-class scheme
