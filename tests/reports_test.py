"""Reports: files parsed back, numbers against sklearn/scipy, PNGs opened with PIL."""
import csv
import io
import json
import os
import struct

import numpy as np
import pytest
from PIL import Image
from scipy import stats
from tqdm import tqdm
from sklearn import metrics as skm

from cmnet_jax import metrics
from cmnet_jax import reports
from cmnet_jax.reports import tensorboard
from cmnet_jax.testing import megc_log


def test_atomic_write_keeps_old_file_when_interrupted(tmp_path, monkeypatch):
  path = tmp_path / "results.json"
  reports.atomic_write(path, "old")

  def boom(*args):
    raise KeyboardInterrupt

  monkeypatch.setattr(os, "replace", boom)
  with pytest.raises(KeyboardInterrupt):
    reports.atomic_write(path, "new" * 1000)
  assert path.read_text() == "old" and os.listdir(tmp_path) == ["results.json"]


def test_results_json_labels_headline_and_oracle(tmp_path):
  labels, preds = np.array([0, 1, 2, 2, 1]), np.array([0, 1, 1, 2, 1])
  summary = metrics.summarize(metrics.confusion_matrix(labels, preds, 3))
  path = reports.write_results_json(
      tmp_path / "results.json", summary,
      extra={"intensity_spearman": {"pooled": float("nan")}, "epochs": np.int64(20)},
      oracle_best_epoch={"uf1": 0.9, "epochs": np.array([3, 7])})
  got = json.loads(path.read_text())
  assert list(got) == ["headline", "intensity_spearman", "epochs", "oracle_best_epoch"]
  assert got["headline"]["selection"] == reports.FINAL_EPOCH_LABEL
  assert got["headline"]["uf1"] == pytest.approx(
      skm.f1_score(labels, preds, average="macro"))
  assert got["headline"]["support"] == [1, 2, 2]
  assert got["oracle_best_epoch"]["label"].startswith("ORACLE")
  assert got["oracle_best_epoch"]["epochs"] == [3, 7]
  assert got["intensity_spearman"]["pooled"] is None and got["epochs"] == 20
  with pytest.raises(ValueError, match="reserved key 'oracle_best_epoch'"):
    reports.write_results_json(tmp_path / "r.json", summary, extra={"oracle_best_epoch": {}})


def test_per_subject_csv_against_sklearn(tmp_path):
  rs = np.random.RandomState(0)
  n = 60
  labels, preds = rs.randint(0, 3, n), rs.randint(0, 3, n)
  dbs = rs.choice(["casme2", "samm"], n)
  subs = rs.choice(["s1", "s2", "s3"], n)
  path = reports.write_per_subject_csv(tmp_path / "per_subject.csv", labels, preds, subs.tolist(),
                                       3, databases=dbs.tolist(),
                                       class_names=["negative", "positive", "surprise"])
  rows = list(csv.DictReader(io.StringIO(path.read_text())))
  assert len(rows) == len(set(zip(dbs, subs)))
  for row in rows:
    m = (dbs == row["database"]) & (subs == row["subject"])
    assert int(row["num_samples"]) == m.sum()
    assert int(row["correct"]) == (labels[m] == preds[m]).sum()
    assert float(row["accuracy"]) == pytest.approx(skm.accuracy_score(labels[m], preds[m]),
                                                   abs=1e-6)
    kw = dict(labels=[0, 1, 2], average="macro", zero_division=0)
    assert float(row["uf1"]) == pytest.approx(skm.f1_score(labels[m], preds[m], **kw), abs=1e-6)
    assert float(row["uar"]) == pytest.approx(skm.recall_score(labels[m], preds[m], **kw),
                                              abs=1e-6)
    assert int(row["support_surprise"]) == (labels[m] == 2).sum()
  with pytest.raises(ValueError, match="differ in length"):
    reports.write_per_subject_csv(tmp_path / "x.csv", labels, preds, subs[:-1].tolist(), 3)


def test_predictions_txt_megc_format(tmp_path):
  dbs = ["casme2", "samm", "casme2", "samm", "smic"]
  subs = ["sub01", "6", "sub01", "6", "s01"]
  files = ["EP02_01f", "006_1_2", "EP09f", "006_1_3", "s01_ne_01"]
  labels, preds = np.array([1, 0, 2, 0, 0]), np.array([1, 2, 2, 0, 1])
  path = reports.write_predictions_txt(tmp_path / "predictions.txt", dbs, subs, files, labels,
                                       preds)
  lines = path.read_text().splitlines()
  assert lines == ["casme2 sub01", "EP02_01f 1 1", "EP09f 2 2", "samm 6", "006_1_2 0 2",
                   "006_1_3 0 0", "smic s01", "s01_ne_01 0 1"]
  back = megc_log.read_predictions_txt(path)
  order = [0, 2, 1, 3, 4]
  assert back["filename"] == [files[i] for i in order]
  assert back["database"] == [dbs[i] for i in order] and back["subject"] == [subs[i] for i in order]
  assert back["label"] == labels[order].tolist() and back["prediction"] == preds[order].tolist()
  with pytest.raises(ValueError, match="row 1 filename: 'a b'"):
    reports.write_predictions_txt(tmp_path / "p.txt", dbs[:2], subs[:2], ["x", "a b"], [0, 0],
                                  [0, 0])
  bad = tmp_path / "bad.txt"
  bad.write_text("casme2 sub01\nEP02_01f one 1\n")
  with pytest.raises(ValueError, match="line 2"):
    megc_log.read_predictions_txt(bad)


def test_spearman_against_scipy():
  rs = np.random.RandomState(1)
  for _ in range(30):
    n = rs.randint(3, 20)
    x, y = rs.randint(0, 5, n).astype(float), rs.randn(n)  # ties in x
    want = stats.spearmanr(x, y).statistic
    got = reports.spearman(x, y)
    assert (np.isnan(got) and np.isnan(want)) or got == pytest.approx(want, abs=1e-12)
  assert np.isnan(reports.spearman([1, 1, 1], [1, 2, 3]))
  learned = rs.randn(6, 9) + np.sin(np.linspace(0, np.pi, 9))
  learned[2] = 0.5  # a constant clip: left out of the per-clip mean
  true = np.sin(np.linspace(0, np.pi, 9)) * rs.uniform(0.5, 1.5, (6, 1))
  r = reports.intensity_spearman(learned, true)
  assert r["mean_curve"] == pytest.approx(stats.spearmanr(learned.mean(0), true.mean(0))[0])
  assert r["pooled"] == pytest.approx(stats.spearmanr(learned.ravel(), true.ravel())[0])
  per_clip = [stats.spearmanr(a, b)[0] for i, (a, b) in enumerate(zip(learned, true)) if i != 2]
  assert r["per_clip_mean"] == pytest.approx(np.mean(per_clip)) and r["per_clip_valid"] == 5
  with pytest.raises(ValueError, match=r"\[time\] or match"):
    reports.intensity_spearman(learned, true[:, :5])


def _png(path):
  with Image.open(path) as im:
    assert im.format == "PNG"
    a = np.asarray(im.convert("L"))
  assert a.shape[0] > 100 and a.shape[1] > 100 and a.std() > 5  # a drawn figure, not blank
  return a.shape


def test_plots_are_pngs(tmp_path):
  rs = np.random.RandomState(2)
  cm = metrics.confusion_matrix(rs.randint(0, 3, 30), rs.randint(0, 3, 30), 3)
  _png(reports.plot_confusion_matrix(tmp_path / "confusion_matrix.png", cm,
                                     ["negative", "positive", "surprise"]))
  learned = rs.randn(10, 9)
  proto = np.r_[np.linspace(0.1, 1, 5), np.linspace(1, 0.1, 5)[1:]]
  _png(reports.plot_intensity_curves(tmp_path / "i1.png", learned, proto))
  _png(reports.plot_intensity_curves(tmp_path / "i2.png", learned, np.tile(proto, (10, 1)),
                                     true=np.tile(proto ** 2, (10, 1)), title="rho = 0.5"))
  hist = {"loss": rs.rand(4, 6), "ce": rs.rand(6), "id": np.where(rs.rand(4, 6) < 0.2, np.nan, 1.0)}
  _png(reports.plot_training_curves(tmp_path / "training_curves.png", hist))
  assert sorted(os.listdir(tmp_path)) == ["confusion_matrix.png", "i1.png", "i2.png",
                                          "training_curves.png"]
  with pytest.raises(ValueError, match="3 class names"):
    reports.plot_confusion_matrix(tmp_path / "c.png", np.zeros((2, 2), int), ["a", "b", "c"])
  with pytest.raises(ValueError, match="prototype mean curve has 5 positions"):
    reports.plot_intensity_curves(tmp_path / "i.png", learned, proto[:5])


def test_intensity_figure_draws_raw_values_on_a_fixed_axis():
  """Issue 15: min-max scaling hid that every s_t was ~0.01; a +-1 sd band left the 0..1 plot."""
  from cmnet_jax.reports import plots  # pylint: disable=import-outside-toplevel
  rs = np.random.RandomState(3)
  learned = 0.01 + 0.002 * rs.rand(20, 9)
  proto = np.r_[np.linspace(0.1, 1, 5), np.linspace(1, 0.1, 5)[1:]]
  ax = plots.intensity_figure(learned, np.tile(proto, (20, 1)), true=proto ** 2).axes[0]
  assert ax.get_ylim() == (0.0, 1.0)
  mean_line, proto_line, true_line = ax.lines
  np.testing.assert_allclose(mean_line.get_ydata(), learned.mean(0))
  np.testing.assert_allclose(proto_line.get_ydata(), proto)
  np.testing.assert_allclose(true_line.get_ydata(), proto ** 2)
  band = ax.collections[0].get_paths()[0].vertices[:, 1]
  assert learned.min() <= band.min() and band.max() <= learned.max()
  np.testing.assert_allclose(band.max(), np.percentile(learned, 90, axis=0).max())
  assert "frame position" in ax.get_xlabel() and "intensity" in ax.get_ylabel()
  assert "values 0.01" in ax.get_legend().get_texts()[0].get_text()
  wide = plots.intensity_figure(rs.randn(10, 9), proto).axes[0]  # out of [0, 1]: axis widens
  assert wide.get_ylim()[0] < 0 and wide.get_ylim()[1] > 1


def test_training_figure_has_integer_epochs_and_labelled_panels():
  from cmnet_jax.reports import plots  # pylint: disable=import-outside-toplevel
  rs = np.random.RandomState(4)
  hist = {"loss": rs.rand(4, 3), "accuracy": rs.rand(4, 3), "wilcoxon_active": rs.rand(3),
          "id": rs.rand(3)}
  axes = plots.training_figure(hist).axes
  for ax in axes:
    ticks = [x for x in ax.get_xticks() if 1 <= x <= 3]
    assert ticks == [1.0, 2.0, 3.0] and ax.get_xlabel() == "epoch" and ax.get_ylabel()
  assert axes[1].get_title() == axes[1].get_ylabel() == "training-batch accuracy"
  np.testing.assert_allclose(axes[1].lines[0].get_ydata(), hist["accuracy"].mean(0))
  assert axes[0].get_ylabel() == axes[3].get_ylabel() == "loss (mean over the epoch)"
  assert axes[2].get_ylabel() == "wilcoxon_active (mean over the epoch)"


def _read_events(path):
  """TFRecord framing (length, crc, data, crc) parsed by hand; payloads are Event protos."""
  from tensorboardX.proto import event_pb2  # pylint: disable=import-outside-toplevel
  raw, out, pos = path.read_bytes(), [], 0
  while pos < len(raw):
    (length,) = struct.unpack("<Q", raw[pos:pos + 8])
    event = event_pb2.Event.FromString(raw[pos + 12:pos + 12 + length])
    pos += 12 + length + 4
    for v in event.summary.value:
      out.append((event.step, v.tag, v.simple_value))
  return out


def test_tensorboard_scalars_read_back(tmp_path):
  with reports.ScalarWriter(tmp_path / "tb") as tb:
    for epoch in (1, 2):
      tb.write(epoch, {"loss/total": 1.0 / epoch, "loss/ce": np.float32(0.25 * epoch)})
    with pytest.raises(ValueError, match="one value"):
      tb.write(3, {"bad": np.zeros(2)})
  (events,) = list((tmp_path / "tb").glob("events.out.tfevents.*"))
  assert sorted(_read_events(events)) == [(1, "loss/ce", 0.25), (1, "loss/total", 1.0),
                                          (2, "loss/ce", 0.5), (2, "loss/total", 0.5)]


def _session(logdir, steps, restart=None, **kwargs):
  with reports.ScalarWriter(logdir, **kwargs) as tb:
    if restart is not None:
      tb.restart(restart)
    for step in steps:
      tb.write(step, {"loss/mean": float(step)})
      tb.flush()


def test_a_resumed_session_adds_a_file_after_a_restart_mark_and_tensorboard_order_holds(tmp_path):
  logdir = tmp_path / "tb"
  reports.ScalarWriter(logdir).close()                  # writes nothing: makes no file
  assert list(logdir.iterdir()) == []
  _session(logdir, [1, 2], restart=1)                   # fresh: no mark
  _session(logdir, [2, 3], restart=2)                   # resumed from step 1's checkpoint
  _session(logdir, [4], restart=4, suffix=".process001")
  files = [p.name for p in tensorboard.event_files(logdir)]
  assert len(files) == 3 and files[2].endswith(".process001")
  got = tensorboard.read_events(logdir)
  assert [(s, t) for s, t, _ in got] == [(1, "loss/mean"), (2, "loss/mean"), (2, "<start>"),
                                         (2, "loss/mean"), (3, "loss/mean"), (4, "<start>"),
                                         (4, "loss/mean")]
  # The library's own framing, read independently, holds the same scalars.
  assert [r for f in tensorboard.event_files(logdir) for r in _read_events(f)] == [
      (s, t, v) for s, t, v in got if t != "<start>"]


def test_a_folder_from_the_earlier_writer_is_read_first_and_a_cut_record_is_dropped(tmp_path):
  """Workdirs written before tensorboardX's writer hold one `events.out.tfevents.cmnet_jax`
  (the same framing); a resume renames it to sort first, so TensorBoard's restart mark drops
  its stale steps. A record cut off by a kill ends what is read of that file."""
  logdir = tmp_path / "tb"
  _session(logdir, [1, 2, 3])
  (made,) = tensorboard.event_files(logdir)
  legacy = logdir / tensorboard.EVENT_FILE
  made.rename(legacy)
  with open(legacy, "ab") as f:                         # killed while writing step 4
    f.write(b"\x30\x00\x00\x00\x00\x00\x00\x00\x01\x02")
  assert [s for s, _, _ in tensorboard.read_events(legacy)] == [1, 2, 3]
  _session(logdir, [3, 4], restart=3)                   # resumed from step 2's checkpoint
  names = [p.name for p in tensorboard.event_files(logdir)]
  assert names[0] == tensorboard.LEGACY_RENAME and len(names) == 2
  assert [(s, t) for s, t, _ in tensorboard.read_events(logdir)] == [
      (1, "loss/mean"), (2, "loss/mean"), (3, "loss/mean"), (3, "<start>"), (3, "loss/mean"),
      (4, "loss/mean")]


def test_results_table_numbers():
  rs = np.random.RandomState(3)
  labels, preds = rs.randint(0, 3, 40), rs.randint(0, 3, 40)
  s = metrics.summarize(metrics.confusion_matrix(labels, preds, 3))
  text = reports.format_results_table({"all": s, "casme2": s}, class_names=["neg", "pos", "sur"])
  lines = text.splitlines()
  assert lines[0].split() == ["rows", "samples", "accuracy", "UF1", "UAR"]
  name, n, acc, uf1, uar = lines[1].split()
  assert (name, int(n)) == ("all", 40) and float(acc) == pytest.approx(
      skm.accuracy_score(labels, preds), abs=5e-5)
  assert float(uf1) == pytest.approx(skm.f1_score(labels, preds, average="macro"), abs=5e-5)
  assert float(uar) == pytest.approx(skm.recall_score(labels, preds, average="macro"), abs=5e-5)
  sur = next(l for l in lines if l.startswith("sur")).split()
  assert int(sur[1]) == (labels == 2).sum()
  assert float(sur[2]) == pytest.approx(skm.f1_score(labels, preds, average=None)[2], abs=5e-5)


class _FakeClock:
  def __init__(self):
    self.t = 0.0

  def __call__(self):
    return self.t


class _Tty(io.StringIO):
  def isatty(self):
    return True


def test_progress_eta_and_throttling():
  """A log (no terminal): whole lines, no '\\r' and no bar, one per epoch at most every
  `min_interval` s plus each group's last; the ETA is the median epoch times the epochs left."""
  clock, out = _FakeClock(), io.StringIO()
  p = reports.Progress(3, 4, stream=out, min_interval=25.0, clock=clock)
  p.skip(1)
  for epoch, secs in zip((1, 2, 3, 4), (30.0, 10.0, 12.0, 11.0)):
    clock.t += secs
    p.update(0, epoch, 2.0 / epoch, secs)
  p.close()
  text = out.getvalue()
  assert "\r" not in text and "\x1b" not in text and "|█" not in text
  lines = text.splitlines()
  # epoch 2 (10 s after the printed epoch 1) is throttled; 3 is 22 s after: throttled too.
  assert [l.split(" | ")[1] for l in lines[1:]] == ["epoch 1/4", "epoch 4/4"]
  assert "finished earlier" in lines[0]
  # 30 s x (3 epochs left in group 0 + 4 in group 2)
  assert lines[1] == "group 1/3 | epoch 1/4 | loss 2.0000 | 30.00s/epoch | ETA 03:30"
  # After group 0 ends: median(30, 10, 12, 11) = 11.5 s x 4 epochs of group 2 (group 1 skipped).
  assert lines[-1].endswith(f"| 11.50s/epoch | ETA {tqdm.format_interval(46)}")
  assert p.eta() == pytest.approx(11.5 * 4)
  # A group resumed at epoch 3 of 4: its first two epochs are not left to train.
  q = reports.Progress(2, 4, stream=io.StringIO(), clock=clock)
  q.update(0, 3, 1.0, 5.0)
  assert q.eta() == pytest.approx(5.0 * (1 + 4))
  tty = _Tty()
  r = reports.Progress(1, 2, stream=tty, clock=clock)
  r.update(0, 1, 1.0, 1.0)
  r.update(0, 2, 1.0, 1.0)
  r.close()
  drawn = tty.getvalue()
  assert "\rgroup 1/1 | epoch 1/2 | loss 1.0000 |#####" in drawn  # a redrawn bar
  assert "\rgroup 1/1 | epoch 2/2 | loss 1.0000 |  1.00s/epoch | ETA 00:00\n" in drawn  # kept


