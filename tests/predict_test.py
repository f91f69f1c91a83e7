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


def test_spot_scores_every_frame_as_the_model_does_and_picks_the_highest(tiny_run):
  """Issue 22: without --apex the apex comes from the learned intensity of every frame."""
  from cmnet_jax.datasets import frames as frames_lib  # pylint: disable=import-outside-toplevel
  workdir, _ = tiny_run
  clip = _clip(workdir)
  config = predict.load_config(workdir)
  model, _, folds = predict.load_fold_params(workdir, config)
  out = predict.spot(workdir, str(clip), config=config)
  numbers = [n for n, _ in frames_lib.list_frames(str(clip))]
  assert out["frames"] == numbers and len(out["intensity"]) == len(numbers)
  # Reference: the full model (the classifier's own call) on 5 frames with the first frame as
  # the onset reference, mean over folds. (The onset frame itself, whose input is all zeros, is
  # numerically degenerate under GroupNorm and is never scored.)
  picks = [1, 3, 7, len(numbers) // 2, len(numbers) - 1]
  x, onset = out["decoded"][picks][None], out["decoded"][:1][None]
  ref = np.mean([np.asarray(model.apply({"params": p}, x, train=False,
                                        reference=onset).intensities[0])
                 for p in folds.values()], 0)
  np.testing.assert_allclose(np.asarray(out["intensity"])[picks], ref, rtol=1e-4, atol=1e-6)
  s = np.asarray(out["intensity"])
  assert out["apex"] == numbers[1 + int(np.argmax(s[1:]))]   # the onset reference is skipped
  low = s[1:].min()
  level = low + predict.SPOT_THRESHOLD * (s.max() - low)
  apex = numbers.index(out["apex"])
  below = [i for i in range(1, len(s)) if s[i] <= level]
  assert out["onset"] == numbers[max([i for i in below if i < apex], default=0)]
  assert out["offset"] == numbers[min([i for i in below if i > apex], default=len(s) - 1)]


def test_predict_without_apex_says_which_frame_it_spotted_and_spot_mode_prints_frames(
    tiny_run, tmp_path, monkeypatch, capsys):
  workdir, _ = tiny_run
  clip = _clip(workdir)
  monkeypatch.chdir(tmp_path)
  assert cli.run("predict", synthetic_config.get_config(), workdir, frames=str(clip)) == 0
  out = capsys.readouterr().out
  spotted = predict.spot(workdir, str(clip))
  assert f"spotted from the learned intensity. apex = frame {spotted['apex']}" in out
  assert cli.run("spot", synthetic_config.get_config(), workdir, frames=str(clip)) == 0
  out = capsys.readouterr().out
  assert (f"spotted: onset {spotted['onset']}, apex {spotted['apex']}, offset "
          f"{spotted['offset']}") in out
  assert out.count("\n") >= len(spotted["frames"]) + 3 and "<- " in out and "apex" in out
  # --apex given: used as given, nothing spotted.
  given = predict.predict(workdir, str(clip), apex=spotted["frames"][2])
  assert given["spotted"] is None


def test_predict_leaves_out_a_frame_of_another_size_with_a_note(tiny_run, tmp_path):
  """Issue 23 (14): the rule training follows, not a silently stretched frame."""
  fake_trees.write_frames(tmp_path / "clip", range(10, 18), "img{}.jpg", size=(16, 16))
  fake_trees.write_frames(tmp_path / "clip", [14], "img{}.jpg", size=(24, 20))
  out = predict.predict(tiny_run[0], str(tmp_path / "clip"))
  assert any("1 frame(s) of another size" in n and "14" in n for n in out["notes"])
  assert 14 not in out["frames"] and 14 not in predict.spot(tiny_run[0],
                                                            str(tmp_path / "clip"))["frames"]


def test_a_video_file_is_named_as_such_with_the_folder_expected(tiny_run, tmp_path, capsys):
  """Issue 23 (16)."""
  video = tmp_path / "clip.mp4"
  video.write_bytes(b"\x00\x00\x00\x18ftypmp42")
  assert cli.run("predict", synthetic_config.get_config(), tiny_run[0], frames=str(video)) == 1
  err = capsys.readouterr().err
  assert "is a video file" in err and "expected a folder of numbered" in err
