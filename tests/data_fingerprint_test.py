"""The data fingerprint a workdir records covers the frame files' contents (issue 23, item 1),
cached per file on (path, size, mtime_ns); workdirs recorded with the older fingerprint (paths
and sizes only) keep working."""
import glob
import json
import os
import shutil

import pytest

from cmnet_jax import cli
from cmnet_jax import input_pipeline
from cmnet_jax import workdir as workdir_lib
from cmnet_jax.datasets import hashes
from cmnet_jax.datasets import index as index_lib
from configs import tiny


def _copy(tiny_run, tmp_path):
  workdir = tmp_path / "run"
  shutil.copytree(tiny_run[0], workdir)
  return workdir


def _snapshot(workdir):
  """{path: (size, mtime)} of every file but the lock file (rewritten by each run holding it)."""
  wd, out = workdir_lib.Workdir(workdir), {}
  for folder, _, files in os.walk(workdir):
    for name in files:
      path = os.path.join(folder, name)
      if path != str(wd.lock_file()):
        st = os.stat(path)
        out[os.path.relpath(path, workdir)] = (st.st_size, st.st_mtime_ns)
  return out


def _a_frame(workdir):
  return sorted(glob.glob(str(workdir / "data" / "synthetic" / "Cropped" / "*" / "*" / "*.jpg")))[0]


def _same_size_other_pixels(path):
  """Rewrites a JPEG with other bytes in its entropy-coded data: same size, other pixels."""
  data = bytearray(open(path, "rb").read())
  i = len(data) // 2
  data[i] = (data[i] + 1) % 256 or 1
  with open(path, "wb") as f:
    f.write(bytes(data))


def test_frames_replaced_at_the_same_byte_size_are_refused_by_eval(tiny_run, tmp_path, capsys):
  workdir = _copy(tiny_run, tmp_path)
  frame = _a_frame(workdir)
  size = os.path.getsize(frame)
  _same_size_other_pixels(frame)
  assert os.path.getsize(frame) == size
  before = _snapshot(workdir)
  assert cli.run("eval", tiny.get_config(), workdir) == 1
  err = capsys.readouterr().err
  assert "the data changed since this workdir was trained" in err and "Traceback" not in err
  assert "other annotation values or frame files" in err
  assert _snapshot(workdir) == before   # predictions.txt and results.json are not rewritten


def _make_older(wd):
  """Rewrites folds.json as a version before issue 23 wrote it: the format-1 fingerprint (frame
  paths and sizes), no format key."""
  meta = json.loads(wd.folds_file.read_text())
  source = input_pipeline.read_source(tiny.get_config(), wd)
  meta["data_fingerprint"] = source.legacy_fingerprint
  del meta["data_fingerprint_format"]
  wd.folds_file.write_text(json.dumps(meta))
  return source


def test_an_older_workdirs_fingerprint_is_accepted_and_upgraded(tiny_run, tmp_path, capsys,
                                                                 monkeypatch):
  workdir = _copy(tiny_run, tmp_path)
  wd = workdir_lib.Workdir(workdir)
  source = _make_older(wd)
  with monkeypatch.context() as m:   # a read-only re-print (fast: no figure is drawn again)
    m.setattr(workdir_lib, "_writable", lambda path: False)
    assert cli.run("train", tiny.get_config(), workdir) == 0
  out = capsys.readouterr().out
  assert "written by an older version" in out and "rows  samples" in out
  # What a writable run then records (train.py writes folds.json once the data loaded):
  notes = wd.check_data(source.fingerprint, source.clips, source.legacy_fingerprint)
  assert len(notes) == 1 and "the contents are recorded from now on" in notes[0]
  meta = json.loads(wd.folds_file.read_text())
  wd.write_folds(meta["class_names"], meta["test_subjects"], source.fingerprint, source.clips)
  meta = json.loads(wd.folds_file.read_text())
  assert meta["data_fingerprint_format"] == workdir_lib.DATA_FINGERPRINT_FORMAT
  assert meta["data_fingerprint"] == source.fingerprint != source.legacy_fingerprint
  assert wd.check_data(source.fingerprint, source.clips, source.legacy_fingerprint) == []


def test_an_older_workdirs_fingerprint_of_other_data_is_refused(tiny_run, tmp_path, capsys):
  workdir = _copy(tiny_run, tmp_path)
  wd = workdir_lib.Workdir(workdir)
  _make_older(wd)
  with open(_a_frame(workdir), "ab") as f:
    f.write(b"\0")   # another size: the older fingerprint sees it
  before = _snapshot(workdir)
  assert cli.run("eval", tiny.get_config(), workdir) == 1
  assert "the data changed since this workdir was trained" in capsys.readouterr().err
  assert _snapshot(workdir) == before


def test_an_unknown_fingerprint_format_is_named(tmp_path):
  wd = workdir_lib.Workdir(tmp_path)
  wd.folds_file.write_text(json.dumps({"data_fingerprint": "x", "data_fingerprint_format": 9,
                                       "clips": []}))
  with pytest.raises(workdir_lib.WorkdirError, match="format 9, which this version does not"):
    wd.check_data("y", [], "z")


def test_a_frames_hash_is_cached_on_path_size_and_mtime(tmp_path, monkeypatch):
  frame = tmp_path / "reg_img1.jpg"
  frame.write_bytes(b"abc")
  old = 1_000_000_000_000_000_000
  os.utime(frame, ns=(old, old))
  cache_file = tmp_path / "frame-hashes.json"
  cache = hashes.HashCache(cache_file)
  digest = cache.digest(str(frame))
  cache.save()
  read = []
  monkeypatch.setattr(hashes, "hash_file", lambda path: read.append(path) or "read")
  assert hashes.HashCache(cache_file).digest(str(frame)) == digest and not read   # a stat only
  frame.write_bytes(b"abd")                 # same size, other bytes, a new mtime
  assert hashes.HashCache(cache_file).digest(str(frame)) == "read" and read


def test_a_file_hashed_in_its_mtimes_clock_tick_is_not_cached(tmp_path):
  """As git's 'racy' entries: a write just after hashing could keep the size and mtime."""
  frame = tmp_path / "reg_img1.jpg"
  frame.write_bytes(b"abc")   # mtime = now
  cache = hashes.HashCache(tmp_path / "frame-hashes.json")
  cache.digest(str(frame))
  cache.save()
  assert not (tmp_path / "frame-hashes.json").exists()


def test_an_unreadable_frame_is_named(tmp_path):
  with pytest.raises(index_lib.DatasetError, match="cannot read frame file .*missing.jpg"):
    hashes.HashCache(None).digest(str(tmp_path / "missing.jpg"))


def test_the_hash_cache_is_written_when_the_clips_load_and_spares_the_reads(tmp_path, monkeypatch):
  from cmnet_jax.testing import fake_trees  # pylint: disable=g-import-not-at-top
  from configs import casme2  # pylint: disable=g-import-not-at-top
  root = fake_trees.write_casme2_tree(tmp_path / "CASME2", [dict(
      subject=1, filename="EP02_01f", onset=46, apex=50, offset=54, action_units=12,
      emotion="happiness", objective_class=1)])
  for folder, _, files in os.walk(root):
    for name in files:
      os.utime(os.path.join(folder, name), ns=(10**18, 10**18))   # settled files: cached
  config = casme2.get_config("quick")
  with config.unlocked():
    config.data.root, config.data.num_frames, config.data.image_size = root, 5, 8
    config.data.train_jitter_copies = 1
  wd = workdir_lib.Workdir(tmp_path / "run")
  wd.create()
  source = input_pipeline.read_source(config, wd)
  assert not wd.frame_hashes_file.exists()       # not before the data are accepted
  input_pipeline.load_clips(config, wd, source)
  assert len(json.loads(wd.frame_hashes_file.read_text())["files"]) == 9
  monkeypatch.setattr(hashes, "hash_file", lambda path: pytest.fail(f"read {path} again"))
  assert input_pipeline.read_source(config, wd).fingerprint == source.fingerprint
