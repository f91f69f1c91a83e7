"""`--mode=predict` on a trained workdir (the tiny run of conftest.py): probabilities, the final
fold models only, nothing written into the workdir, clear errors (issue 15)."""
import os
import shutil
import types

import numpy as np
import pytest

from cmnet_jax import checkpoint
from cmnet_jax import cli
from cmnet_jax import predict
from cmnet_jax import workdir as workdir_lib
from cmnet_jax.datasets import DatasetError
from cmnet_jax.testing import fake_trees
from configs import synthetic as synthetic_config


def _clip(workdir):
  wd = workdir_lib.Workdir(workdir)
  return sorted((wd.generated_data("synthetic") / "Cropped" / "sub01").iterdir())[0]


def _listing(workdir):
  """(path, mtime) of every file under `workdir`."""
  paths = [os.path.join(d, f) for d, _, files in os.walk(workdir) for f in files]
  return sorted((os.path.relpath(p, workdir), os.stat(p).st_mtime_ns) for p in paths)


def test_predict_ensemble_and_one_fold(tiny_run, tmp_path):
  workdir, _ = tiny_run
  clip = _clip(workdir)
  out = predict.predict(workdir, str(clip), out_png=tmp_path / "curve.png")
  probs = np.array(list(out["probabilities"].values()))
  assert len(probs) == 5 and abs(probs.sum() - 1) < 1e-5 and (probs >= 0).all()
  assert out["folds"] == ["sub01", "sub02", "sub03"] and (tmp_path / "curve.png").is_file()
  # The guessed apex is the sampled frame that differs most from the first one.
  read = predict.read_clip(str(clip), onset=None, apex=None, offset=None, num_frames=5,
                           image_size=16)
  assert read.numbers[0] == min(read.numbers) and read.apex_index == 2
  one = predict.predict(workdir, str(clip), fold="sub02")
  assert one["folds"] == ["sub02"] and "intensity_png" not in one


def test_predict_uses_the_workdirs_config_writes_nothing_there_and_no_orbax_noise(
    tiny_run, tmp_path, monkeypatch, capfd):
  workdir, _ = tiny_run
  before = _listing(workdir)
  monkeypatch.chdir(tmp_path)
  # The default config (64 px, 9 frames) differs from the workdir's: the workdir's is used.
  assert cli.run("predict", synthetic_config.get_config(), workdir, frames=str(_clip(workdir)),
                 config_given=True) == 0
  out, err = capfd.readouterr()
  assert "predicted:" in out and f"intensity curve: {tmp_path}" in out
  assert "could not be restored" not in out + err  # Orbax's warning on every restore
  assert (tmp_path / f"predict_{_clip(workdir).name}_intensity.png").is_file()
  assert _listing(workdir) == before
  assert cli.run("predict", synthetic_config.get_config(), workdir, frames=str(_clip(workdir)),
                 fold="nobody") == 1


@pytest.mark.parametrize("frames", [1, 2])
def test_a_clip_of_one_or_two_frames_is_refused_with_the_minimum(tiny_run, tmp_path, frames):
  fake_trees.write_frames(tmp_path / "clip", range(10, 10 + frames), "img{}.jpg", size=(16, 16))
  with pytest.raises(DatasetError, match=f"{frames} frame\\(s\\).*at least 3"):
    predict.predict(tiny_run[0], str(tmp_path / "clip"))


def test_a_short_clip_is_predicted_with_a_note(tiny_run, tmp_path):
  fake_trees.write_frames(tmp_path / "clip", range(10, 13), "img{}.jpg", size=(16, 16))
  out = predict.predict(tiny_run[0], str(tmp_path / "clip"))
  assert "fewer than the 5" in out["notes"][0] and sorted(set(out["frames"])) == [10, 11, 12]


def test_no_folds_json_names_the_file_and_the_fix(tiny_run, tmp_path, capsys):
  workdir = tmp_path / "run"
  shutil.copytree(tiny_run[0], workdir)
  wd = workdir_lib.Workdir(workdir)
  wd.folds_file.unlink()
  assert cli.run("predict", synthetic_config.get_config(), workdir,
                 frames=str(_clip(workdir))) == 1
  err = capsys.readouterr().err
  assert f"{wd.folds_file} does not exist" in err and "train first" in err


def test_a_damaged_final_checkpoint_is_named_never_replaced_by_an_older_one(tiny_run, tmp_path,
                                                                         capsys):
  workdir = tmp_path / "run"
  shutil.copytree(tiny_run[0], workdir)
  wd = workdir_lib.Workdir(workdir)
  final = wd.checkpoint_dir(0, 0) / "2"
  biggest = max((p for p in final.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
  raw = bytearray(biggest.read_bytes())
  raw[64::32] = bytes(b ^ 0xFF for b in raw[64::32])
  biggest.write_bytes(bytes(raw))
  before = _listing(workdir)
  with pytest.raises(checkpoint.CheckpointError, match=f"checkpoint {final} is damaged") as e:
    predict.predict(workdir, str(_clip(workdir)))
  assert f"mv {final} {final}.damaged" in str(e.value)
  assert "from the checkpoint at epoch 1" in str(e.value)
  assert _listing(workdir) == before  # nothing set aside or renamed by a read
  # Eval says the same (it used to send the user back to training, which skipped the group).
  assert cli.run("eval", synthetic_config.get_config(), workdir) == 1
  assert f"checkpoint {final} is damaged" in capsys.readouterr().err


def test_closed_event_loop_errors_of_a_failed_restore_are_dropped_others_kept():
  """A failed restore's in-flight reads find Orbax's event loop closed and print one traceback
  each through sys.unraisablehook (about 100 lines around one useful warning). checkpoint.py
  installs a filter at import (pytest swaps sys.unraisablehook during tests, so the filter is
  called directly here)."""
  def unraisable(message):
    try:
      raise RuntimeError(message)
    except RuntimeError as e:
      return types.SimpleNamespace(exc_type=RuntimeError, exc_value=e,
                                   exc_traceback=e.__traceback__, err_msg=None, object=None)
  seen = []
  hook = checkpoint._quiet_closed_loop(seen.append)  # pylint: disable=protected-access
  hook(unraisable("Event loop is closed"))
  assert seen == []
  hook(unraisable("something else"))
  assert [str(u.exc_value) for u in seen] == ["something else"]
