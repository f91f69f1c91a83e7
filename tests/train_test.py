"""LOSO training end to end on the tiny synthetic config (4 simulated CPU devices).

One uninterrupted reference run (3 folds on 3 devices) is compared with: the same run on one
device, a run killed with SIGKILL after its first checkpoint and resumed, and a two-process
(multi-host) run. Fold results must not depend on how the folds were laid out.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as skm

from cmnet_jax.testing import megc_log
from cmnet_jax import train
from cmnet_jax import train_step
from configs import tiny

ROOT = Path(__file__).resolve().parents[1]


def _run(workdir, **overrides):
  config = tiny.get_config()
  with config.unlocked():
    for key, value in overrides.items():
      block, name = key.split(".")
      config[block][name] = value
  return train.train_and_evaluate(config, workdir)


def _group(workdir):
  return dict(np.load(Path(workdir) / "folds" / "group000_process000.npz"))


def _fold_logits(workdir):
  """{fold id: held-out logits} from every group file of a workdir."""
  out = {}
  for path in sorted((Path(workdir) / "folds").glob("*.npz")):
    g = np.load(path)
    for slot, fid in enumerate(g["fold_ids"]):
      if fid >= 0:
        out[int(fid)] = g["logits"][slot][g["test_mask"][slot]]
  return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("reference")
  return workdir, _run(workdir)


def test_outputs_and_metrics_match_sklearn(reference):
  workdir, results = reference
  for name in ("results.json", "per_subject.csv", "predictions.txt", "confusion_matrix.png",
               "intensity_curves.png", "training_curves.png", "config.json"):
    assert (workdir / name).is_file(), name
  assert list((workdir / "tensorboard").iterdir())
  pred = megc_log.read_predictions_txt(workdir / "predictions.txt")
  on_disk = json.loads((workdir / "results.json").read_text())
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
  folds = json.loads((workdir / "folds.json").read_text())["test_subjects"]
  assert sorted(set(pred["subject"])) == sorted(folds)


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
  assert len(_group(tmp_path)["fold_ids"]) == 3 and _group(tmp_path)["logits"].ndim == 3
  ref, one = _fold_logits(ref_dir), _fold_logits(tmp_path)
  assert sorted(ref) == sorted(one) == [0, 1, 2]
  for fid in ref:
    np.testing.assert_allclose(one[fid], ref[fid], rtol=1e-4, atol=1e-4)
    assert (one[fid].argmax(-1) == ref[fid].argmax(-1)).all()
  assert (tmp_path / "predictions.txt").read_text() == (ref_dir / "predictions.txt").read_text()


def _env(**extra):
  env = dict(os.environ)
  env["PYTHONPATH"] = str(ROOT)
  env.update(extra)
  return env


def test_resume_after_sigkill_gives_the_uninterrupted_predictions(reference, tmp_path):
  cmd = [sys.executable, str(ROOT / "run.py"), f"--config={ROOT / 'configs' / 'tiny.py'}",
         f"--workdir={tmp_path}"]
  first = tmp_path / "checkpoints" / "group000_process000" / "1"
  proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT)
  deadline = time.monotonic() + 400
  while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  out = proc.communicate()[0].decode()
  assert first.exists(), out
  assert not (tmp_path / "results.json").exists(), "the run finished before it could be killed"
  resumed = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True,
                           timeout=400)
  assert resumed.returncode == 0, resumed.stdout + resumed.stderr
  ref_dir, _ = reference
  assert (tmp_path / "predictions.txt").read_text() == (ref_dir / "predictions.txt").read_text()
  ref, res = _fold_logits(ref_dir), _fold_logits(tmp_path)
  for fid in ref:
    np.testing.assert_allclose(res[fid], ref[fid], rtol=1e-5, atol=1e-5)


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
  files = sorted(p.name for p in (tmp_path / "folds").glob("*.npz"))
  assert files == ["group000_process000.npz", "group000_process001.npz"]
  ref_dir, _ = reference
  assert (tmp_path / "predictions.txt").read_text() == (ref_dir / "predictions.txt").read_text()
  ref, multi = _fold_logits(ref_dir), _fold_logits(tmp_path)
  for fid in ref:
    np.testing.assert_allclose(multi[fid], ref[fid], rtol=1e-4, atol=1e-4)


def test_non_finite_loss_names_fold_epoch_and_step(tmp_path):
  with pytest.raises(train.NonFiniteLossError, match=r"fold 0 .*epoch 1, step 1"):
    _run(tmp_path, **{"optim.learning_rate": float("nan"), "loss.lambda_id": 0.0,
                      "loss.lambda_w": 0.0})


def test_batch_larger_than_a_training_set_is_refused(tmp_path):
  with pytest.raises(train.RunError, match="train.batch_size=99"):
    _run(tmp_path, **{"train.batch_size": 99})


def test_other_config_in_workdir_is_refused(reference):
  workdir, _ = reference
  with pytest.raises(train.RunError, match="different config"):
    _run(workdir, **{"train.seed": 5})


def test_eval_mode_reproduces_the_final_predictions(reference, tmp_path):
  workdir, _ = reference
  before = (workdir / "predictions.txt").read_text()
  (workdir / "predictions.txt").unlink()
  train.train_and_evaluate(tiny.get_config(), workdir, evaluate_only=True)
  assert (workdir / "predictions.txt").read_text() == before


def test_predict_ensemble_and_one_fold(reference, tmp_path, capsys):
  from cmnet_jax import cli
  from cmnet_jax import predict
  workdir, _ = reference
  clip = sorted((workdir / "data" / "synthetic" / "Cropped" / "sub01").iterdir())[0]
  out = predict.predict(workdir, str(clip), out_png=tmp_path / "curve.png")
  probs = np.array(list(out["probabilities"].values()))
  assert len(probs) == 5 and abs(probs.sum() - 1) < 1e-5 and (probs >= 0).all()
  assert out["folds"] == ["sub01", "sub02", "sub03"] and (tmp_path / "curve.png").is_file()
  # The guessed apex is the sampled frame that differs most from the first one.
  frames, apex, numbers = predict.read_clip(str(clip), onset=None, apex=None, offset=None,
                                            num_frames=5, image_size=16)
  assert numbers[0] == min(numbers) and apex == 2
  one = predict.predict(workdir, str(clip), fold="sub02", out_png=tmp_path / "c2.png")
  assert one["folds"] == ["sub02"]
  config = tiny.get_config()
  assert cli.run("predict", config, workdir, frames=str(clip)) == 0
  assert "predicted:" in capsys.readouterr().out
  assert cli.run("predict", config, workdir, frames=str(clip), fold="nobody") == 1
