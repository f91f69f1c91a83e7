"""LOSO training end to end on the tiny synthetic config (4 simulated CPU devices).

One uninterrupted reference run (3 folds on 3 devices, `tiny_run` in conftest.py) is compared
with: the same run on one device, a run killed with SIGKILL after its first checkpoint and
resumed, and a two-process (multi-host) run. Fold results must not depend on how the folds were
laid out. Then what a second command on a workdir may do (config rules, NaN runs, eval) and the
TensorBoard stream. Every workdir file is named through `cmnet_jax.workdir`.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as skm

from cmnet_jax import cli
from cmnet_jax import config_blocks
from cmnet_jax import reports
from cmnet_jax import train
from cmnet_jax import train_step
from cmnet_jax import workdir as workdir_lib
from cmnet_jax.testing import megc_log
from cmnet_jax.testing import runs
from configs import tiny

ROOT = Path(__file__).resolve().parents[1]


def _config(variant="", **overrides):
  config = tiny.get_config(variant)
  with config.unlocked():
    for key, value in overrides.items():
      block, name = key.split(".")
      config[block][name] = value
  return config


def _run(workdir, variant="", **overrides):
  return train.train_and_evaluate(_config(variant, **overrides), workdir)


def _predictions(workdir):
  return workdir_lib.Workdir(workdir).report("predictions").read_text()


@pytest.fixture(scope="module")
def reference(tiny_run):
  return tiny_run


def test_outputs_and_metrics_match_sklearn(reference):
  workdir, results = reference
  wd = workdir_lib.Workdir(workdir)
  for name in workdir_lib.REPORTS:
    assert wd.report(name).is_file(), name
  assert wd.config_file.is_file() and wd.folds_file.is_file()
  pred = megc_log.read_predictions_txt(wd.report("predictions"))
  on_disk = json.loads(wd.report("results").read_text())
  labels, preds = np.array(pred["label"]), np.array(pred["prediction"])
  assert len(set(zip(pred["subject"], pred["filename"]))) == len(labels) == 15
  head = on_disk["headline"]
  assert head["accuracy"] == pytest.approx(skm.accuracy_score(labels, preds))
  assert head["uf1"] == pytest.approx(skm.f1_score(labels, preds, average="macro",
                                                   labels=range(5), zero_division=0))
  assert head["uar"] == pytest.approx(skm.recall_score(labels, preds, average="macro",
                                                       labels=range(5), zero_division=0))
  assert "final-epoch" in head["selection"] and "oracle_best_epoch" not in on_disk
  assert set(on_disk["intensity_spearman"]) == {"vs_prototype", "vs_true"}
  assert results["headline"]["accuracy"] == head["accuracy"]
  # Every held-out subject's clips were predicted by the fold that held it out.
  assert sorted(set(pred["subject"])) == sorted(wd.read_folds()["test_subjects"])


def test_synthetic_data_are_named_synthetic(reference):
  """Issue 15: the synthetic set was labelled 'casme2' on the terminal and in the outputs."""
  wd = workdir_lib.Workdir(reference[0])
  assert set(megc_log.read_predictions_txt(wd.report("predictions"))["database"]) == {
      "synthetic"}
  assert {line.split(",")[0] for line in wd.report("per_subject").read_text().splitlines()[1:]
          } == {"synthetic"}


def test_tensorboard_streams_every_epoch_into_one_event_file(reference):
  wd = workdir_lib.Workdir(reference[0])
  (events,) = list(wd.tensorboard_dir.iterdir())
  got = reports.read_events(events)
  tags = {tag for _, tag, _ in got}
  for metric in ("loss", "ce", "id", "accuracy_training_batch"):
    assert {f"{metric}/mean", f"{metric}/fold_sub01", f"{metric}/fold_sub03"} <= tags
  assert "learning_rate" in tags and "intensity/saturated_fraction" in tags
  assert sorted({step for step, tag, _ in got if tag == "loss/mean"}) == [1, 2]
  diag = json.loads(wd.report("results").read_text())["intensity"]
  written = {tag[len("intensity/"):]: v for _, tag, v in got if tag.startswith("intensity/")}
  assert written == pytest.approx(diag)


def test_one_device_equals_fold_parallel_and_compiles_once(reference, tmp_path, monkeypatch):
  traces = {"epoch": 0, "eval": 0}
  make_epoch, make_eval = train_step.make_train_epoch, train_step.make_eval

  def counting(kind, make):
    def factory(*args, **kwargs):
      fn = make(*args, **kwargs)

      def wrapped(*a):
        traces[kind] += 1  # runs once per trace, i.e. once per compilation
        return fn(*a)
      return wrapped
    return factory

  monkeypatch.setattr(train_step, "make_train_epoch", counting("epoch", make_epoch))
  monkeypatch.setattr(train_step, "make_eval", counting("eval", make_eval))
  _run(tmp_path, **{"train.num_devices": 1})
  assert traces == {"epoch": 1, "eval": 1}  # 2 epochs, one compilation
  ref_dir, _ = reference
  wd = workdir_lib.Workdir(tmp_path)
  group = wd.load_group(wd.group_file(0, 0))
  assert len(group["fold_ids"]) == 3 and group["logits"].ndim == 3
  ref, one = runs.fold_logits(ref_dir), runs.fold_logits(tmp_path)
  assert sorted(ref) == sorted(one) == [0, 1, 2]
  for fid in ref:
    np.testing.assert_allclose(one[fid], ref[fid], rtol=1e-4, atol=1e-4)
    assert (one[fid].argmax(-1) == ref[fid].argmax(-1)).all()
  assert _predictions(tmp_path) == _predictions(ref_dir)


def _env(**extra):
  env = dict(os.environ)
  env["PYTHONPATH"] = str(ROOT)
  env.update(extra)
  return env


def test_resume_after_sigkill_gives_the_uninterrupted_predictions(reference, tmp_path):
  cmd = [sys.executable, str(ROOT / "run.py"), f"--config={ROOT / 'configs' / 'tiny.py'}",
         f"--workdir={tmp_path}"]
  wd = workdir_lib.Workdir(tmp_path)
  first = wd.checkpoint_dir(0, 0) / "1"
  proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT)
  deadline = time.monotonic() + 400
  while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  out = proc.communicate()[0].decode()
  assert first.exists(), out
  assert not wd.is_finished(), "the run finished before it could be killed"
  # The killed run's lock died with it: the resumed run is not refused.
  resumed = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True,
                           timeout=400)
  assert resumed.returncode == 0, resumed.stdout + resumed.stderr
  ref_dir, _ = reference
  assert _predictions(tmp_path) == _predictions(ref_dir)
  ref, res = runs.fold_logits(ref_dir), runs.fold_logits(tmp_path)
  for fid in ref:
    np.testing.assert_allclose(res[fid], ref[fid], rtol=1e-5, atol=1e-5)
  # The figures too, bit for bit (issue 23: the last-epoch loss differed by one ulp).
  results = [json.loads(workdir_lib.Workdir(d).report("results").read_text())
             for d in (ref_dir, tmp_path)]
  for key in ("training_last_epoch", "headline", "intensity"):
    assert results[0][key] == results[1][key], key
  # One event file per session, read in TensorBoard's order: the resumed epochs follow a
  # restart mark at the resume step.
  got = reports.read_events(wd.tensorboard_dir)
  assert [step for step, tag, _ in got if tag == "<start>"] in ([], [2])  # [] if killed first
  # The killed session may have written epoch 2's scalars between its checkpoint and the kill;
  # the resumed one then writes epoch 2 again after its mark (TensorBoard keeps the later one).
  steps = [step for step, tag, _ in got if tag == "loss/mean"]
  assert steps == sorted(steps) and sorted(set(steps))[-2:] == [1, 2] and steps[-1] == 2, steps


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def test_two_processes_merge_to_the_single_process_results(reference, tmp_path):
  port = _free_port()
  cmd = [sys.executable, str(ROOT / "run.py"), f"--config={ROOT / 'configs' / 'tiny.py'}",
         f"--workdir={tmp_path}"]
  procs = []
  for pid in range(2):
    env = _env(XLA_FLAGS="--xla_force_host_platform_device_count=2", CMNET_DISTRIBUTED="1",
               JAX_COORDINATOR_ADDRESS=f"localhost:{port}", CMNET_NUM_PROCESSES="2",
               CMNET_PROCESS_ID=str(pid))
    procs.append(subprocess.Popen(["timeout", "-k", "10", "400"] + cmd, cwd=ROOT, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
  outs = [p.communicate()[0].decode() for p in procs]
  assert [p.returncode for p in procs] == [0, 0], "\n".join(outs)
  wd = workdir_lib.Workdir(tmp_path)
  assert [(g.group, g.process) for g in wd.group_files()] == [(0, 0), (0, 1)]
  ref_dir, _ = reference
  assert _predictions(tmp_path) == _predictions(ref_dir)
  ref, multi = runs.fold_logits(ref_dir), runs.fold_logits(tmp_path)
  for fid in ref:
    np.testing.assert_allclose(multi[fid], ref[fid], rtol=1e-4, atol=1e-4)


def test_nan_run_says_nothing_was_kept_and_a_sane_rate_then_trains_in_the_same_workdir(
    tmp_path, capsys):
  nan = {"optim.learning_rate": float("nan"), "loss.lambda_id": 0.0, "loss.lambda_w": 0.0}
  with pytest.raises(train.NonFiniteLossError, match=r"fold 0 .*epoch 1, step 1") as e:
    _run(tmp_path, "quick", **nan)
  assert "last good checkpoint" not in str(e.value)
  assert "nothing was saved" in str(e.value) and "optim.learning_rate" in str(e.value)
  # The corrected command on the same workdir replaces the recorded config (nothing trained).
  results = _run(tmp_path, "quick", **{k: v for k, v in nan.items() if k != "optim.learning_rate"})
  assert "replaces it" in capsys.readouterr().out and results["headline"]["num_samples"] == 15
  recorded = workdir_lib.Workdir(tmp_path).read_config()
  assert recorded["optim"]["learning_rate"] == tiny.get_config().optim.learning_rate


def test_batch_larger_than_a_training_set_is_refused_and_writes_no_config(tmp_path):
  with pytest.raises(config_blocks.ConfigError, match="train.batch_size = 99"):
    _run(tmp_path, **{"train.batch_size": 99})
  assert not any(tmp_path.iterdir())                 # refused before anything was written
  assert not workdir_lib.Workdir(tmp_path).config_file.exists()


def test_other_config_in_a_trained_workdir_names_every_key_and_the_way_out(reference, tmp_path):
  workdir = tmp_path / "run"
  shutil.copytree(reference[0], workdir)
  with pytest.raises(train.WorkdirError) as e:
    _run(workdir, **{"train.seed": 5, "optim.learning_rate": 0.01})
  message = str(e.value)
  assert "train.seed: 0 -> 5" in message and "optim.learning_rate: 0.001 -> 0.01" in message
  assert "new --workdir" in message and "change optim.learning_rate, train.seed back" in message


def test_keys_that_change_nothing_trained_may_change_on_resume(reference, tmp_path, capsys):
  workdir = tmp_path / "run"
  shutil.copytree(reference[0], workdir)
  _run(workdir, **{"train.checkpoints_to_keep": 3})
  out = capsys.readouterr().out
  assert "train.checkpoints_to_keep: 2 -> 3" in out and "rows  samples" in out
  assert workdir_lib.Workdir(workdir).read_config()["train"]["checkpoints_to_keep"] == 3


def test_eval_mode_uses_the_workdirs_config_and_reproduces_the_predictions(reference, tmp_path,
                                                                         capsys):
  workdir = tmp_path / "run"
  shutil.copytree(reference[0], workdir)
  wd = workdir_lib.Workdir(workdir)
  before = _predictions(workdir)
  events = sorted(wd.tensorboard_dir.iterdir())
  wd.report("predictions").unlink()
  # A quick run's workdir evaluated without re-passing the variant (issue 15): here the default
  # tiny config differs from the recorded one only in the explicit override below.
  assert cli.run("eval", _config(**{"train.num_epochs": 7}), workdir, config_given=True) == 0
  assert "train.num_epochs: 2 -> 7" in capsys.readouterr().out
  assert _predictions(workdir) == before
  assert sorted(wd.tensorboard_dir.iterdir()) == events  # eval adds no event file



@pytest.mark.parametrize("held", ["checkpoint", "group file"])
def test_a_workdir_trained_with_padded_slots_keeps_its_layout(tmp_path, capsys, held):
  """Issue 23: train.folds_per_device now uses only the devices the folds need (fewer slots);
  a workdir trained before with the padded layout (its checkpoints and fold-group files hold
  that many slots) keeps it, so it still resumes and evaluates. A new one gets the new one."""
  from cmnet_jax import checkpoint  # pylint: disable=g-import-not-at-top
  config = _config(**{"train.folds_per_device": 2})   # 3 folds on the 4 test devices
  wd = workdir_lib.Workdir(tmp_path)
  new = train._layout(config, wd, 3)
  assert (len(new.devices), new.folds_per_device) == (2, 2)
  if held == "checkpoint":
    with checkpoint.CheckpointStore(wd.checkpoint_dir(0, 0)) as store:
      store.save(1, {"w": np.zeros((6, 2), np.float32)}, {})
  else:
    wd.save_group(0, 0, {"fold_ids": np.array([0, 1, 2, -1, -1, -1])})
  old = train._layout(config, wd, 3)
  assert (len(old.devices), old.folds_per_device) == (3, 2)
  assert "trained with 3 devices x 2 folds (6 slots for 3 folds)" in capsys.readouterr().out


def test_the_training_history_survives_a_checkpoint_bit_for_bit(tmp_path):
  """Issue 23: restored as float64, a resumed run's last-epoch means (results.json) differed
  from an uninterrupted run's by one ulp; the history keeps its float32 dtype."""
  from cmnet_jax import checkpoint  # pylint: disable=g-import-not-at-top
  history = {"loss": [np.float32([2.8766, 1.1]) / np.float32(3)] * 2}
  with checkpoint.CheckpointStore(tmp_path) as store:
    store.save(1, {"w": np.zeros(1, np.float32)}, {"history": history})
    extra = store.restore_latest({"w": np.zeros(1, np.float32)})[2]
  restored = train.history_from_extra(extra["history"])
  restored["loss"].append(np.float32([1.3, 0.7]) / np.float32(3))   # the resumed epoch
  uninterrupted = history["loss"] + [np.float32([1.3, 0.7]) / np.float32(3)]
  got, want = np.stack(restored["loss"], 1), np.stack(uninterrupted, 1)
  assert got.dtype == want.dtype == np.float32 and got.tobytes() == want.tobytes()
  assert float(np.nanmean(got[:, -1])) == float(np.nanmean(want[:, -1]))
  # A checkpoint written before (plain lists of the float32 values) reads back the same.
  legacy = train.history_from_extra({"loss": [v.tolist() for v in history["loss"]]})
  assert np.stack(legacy["loss"], 1).tobytes() == np.stack(history["loss"], 1).tobytes()
