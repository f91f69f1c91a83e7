"""Gathering a run's per-fold results on the host, merging them, and writing the reports.

Each fold group (on each process) writes its file in the workdir's folds folder once it has
finished (`Workdir.save_group`), so a resumed run skips finished groups. The groups of every
process reach process 0 through `jax.experimental.multihost_utils.process_allgather` once
training is done (`train._gather`: hosts of a pod share no disk), and process 0 merges them.
"""
from __future__ import annotations

from typing import Any, Optional

import ml_collections
import numpy as np

from cmnet_jax import metrics
from cmnet_jax import reports
from cmnet_jax import workdir as workdir_lib


def group_arrays(*, fold_ids, fold_data, logits, intensities, ablated_logits, history,
                 oracle) -> dict[str, np.ndarray]:
  """One fold group's held-out predictions and training history, as `Workdir.save_group` stores
  them and `merge` reads them."""
  arrays = {"fold_ids": np.asarray(fold_ids), "test_ids": np.asarray(fold_data.test_ids),
            "test_mask": np.asarray(fold_data.test_mask), "logits": logits,
            "intensities": intensities, "ablated_logits": ablated_logits}
  arrays.update({f"history_{k}": v for k, v in history.items()})
  if oracle:
    arrays["oracle_epochs"] = np.array([e for e, _ in oracle])
    arrays["oracle_predictions"] = np.stack([p for _, p in oracle], 1)  # [slots, evals, max_test]
  return arrays


def merge(groups: list[dict], num_clips: int) -> dict[str, Any]:
  """Per-clip logits, ablated logits and intensities (each clip is tested exactly once) and
  per-fold history."""
  logits = intensities = ablated = None
  seen = np.zeros(num_clips, bool)
  history: dict[str, list] = {}
  oracle: dict[int, np.ndarray] = {}
  for g in groups:
    real = g["fold_ids"] >= 0
    if logits is None:
      logits = np.zeros((num_clips,) + g["logits"].shape[2:], np.float32)
      intensities = np.zeros((num_clips,) + g["intensities"].shape[2:], np.float32)
      ablated = np.zeros_like(logits)
    ids, mask = g["test_ids"][real], g["test_mask"][real]
    if np.any(seen[ids[mask]]):
      raise ValueError("a clip was tested by two folds: the fold files are inconsistent")
    seen[ids[mask]] = True
    logits[ids[mask]] = g["logits"][real][mask]
    intensities[ids[mask]] = g["intensities"][real][mask]
    ablated[ids[mask]] = g["ablated_logits"][real][mask]
    for key in g:
      if key.startswith("history_"):
        history.setdefault(key[len("history_"):], []).append(g[key][real])
    if "oracle_predictions" in g:
      preds = g["oracle_predictions"][real]  # [folds, evals, max_test]
      for slot in range(preds.shape[0]):
        oracle[int(g["fold_ids"][real][slot])] = (g["oracle_epochs"], preds[slot], ids[slot],
                                                  mask[slot])
  if not seen.all():
    raise ValueError(f"{int((~seen).sum())} clips were never tested: the fold files are "
                     "incomplete")
  return {"logits": logits, "intensities": intensities, "ablated_logits": ablated,
          "history": {k: np.concatenate(v, 0) for k, v in history.items()}, "oracle": oracle}


def _oracle_predictions(oracle: dict, labels: np.ndarray) -> tuple[np.ndarray, list[int]]:
  """Per fold, the evaluated epoch with the most correct held-out predictions (test selection)."""
  preds = np.zeros_like(labels)
  chosen = []
  for fid in sorted(oracle):
    epochs, p, ids, mask = oracle[fid]
    correct = (p[:, mask] == labels[ids[mask]][None]).sum(1)
    best = int(np.argmax(correct))
    chosen.append(int(epochs[best]))
    preds[ids[mask]] = p[best, mask]
  return preds, chosen


def finish(config: ml_collections.ConfigDict, wd: workdir_lib.Workdir, data, groups: list[dict],
           *, write: bool = True, tensorboard: Optional[Any] = None) -> dict:
  """Pooled metrics and every report of the run; prints the results table.

  `write=False` (a read-only workdir) only prints. `tensorboard` (a `reports.ScalarWriter`), if
  given, gets the intensity diagnostics and the headline at the run's last step.
  """
  from cmnet_jax import losses  # pylint: disable=g-import-not-at-top
  merged = merge(groups, len(data.labels))
  labels = data.labels
  preds = merged["logits"].argmax(-1)
  num_classes = len(data.class_names)
  conf = metrics.confusion_matrix(labels, preds, num_classes)
  headline = dict(metrics.summarize(conf), class_names=list(data.class_names),
                  num_folds=len(data.folds), chance_accuracy=1.0 / num_classes)
  rows = {"all": headline}
  if len(set(data.datasets)) > 1:
    per_db = metrics.per_group(labels, preds, list(data.datasets), num_classes)
    headline["per_database"] = per_db
    rows.update(per_db)
  # Intensity curves: learned s_t vs the prototype (and the true intensity on synthetic data).
  mean_curves = np.stack([np.asarray(losses.intensity_prototype(
      data.eval_frames.shape[1], int(a),
      epsilon=config.loss.prototype_epsilon, sigma_floor=config.loss.prototype_sigma_floor)[0])
                          for a in data.eval_apex])
  intensity = {"vs_prototype": reports.intensity_spearman(merged["intensities"], mean_curves)}
  if data.true_intensity is not None:
    intensity["vs_true"] = reports.intensity_spearman(merged["intensities"], data.true_intensity)
  active = merged["history"].get("wilcoxon_active")
  diagnostics = reports.intensity_diagnostics(
      merged["intensities"], merged["logits"], merged["ablated_logits"],
      wilcoxon_active=None if active is None else active[:, -1],
      true_intensity=data.true_intensity, prototype_mean=mean_curves)
  # The same intensity beside position-only, shuffled and difference-image controls.
  groups = np.zeros(len(labels), np.int64)
  for k, fold in enumerate(data.folds):
    groups[list(fold.test_ids)] = k
  apex = (np.argmax(data.true_intensity, 1) if data.true_intensity is not None
          else np.asarray(data.eval_apex))
  diagnostics.update(reports.position_diagnostics(
      merged["intensities"], groups=groups, apex=apex,
      motion=reports.motion_energy(data.eval_frames), true_intensity=data.true_intensity,
      exclude_onset=config.model.input_mode == "onset_difference"))
  # Every logged training quantity (loss, each objective term and its metrics, accuracy) in the
  # last epoch, averaged over the folds' steps: a registered term's value shows up here.
  last_epoch = {k: float(np.nanmean(v[:, -1])) for k, v in sorted(merged["history"].items())}
  extra = {"intensity": diagnostics, "intensity_spearman": intensity,
           "training_last_epoch": last_epoch, "config": config.to_dict()}
  oracle_block = None
  if merged["oracle"]:
    opreds, chosen = _oracle_predictions(merged["oracle"], labels)
    oracle_block = dict(metrics.summarize(metrics.confusion_matrix(labels, opreds, num_classes)),
                        chosen_epochs=chosen)
  if tensorboard is not None:
    tensorboard.write(tensorboard.last_step, {
        **{f"intensity/{k}": v for k, v in diagnostics.items()},
        **{f"test/{k}": headline[k] for k in ("accuracy", "uf1", "uar")}})
    tensorboard.flush()
  if write:
    reports.write_per_subject_csv(wd.report("per_subject"), labels, preds, list(data.subjects),
                                  num_classes, databases=list(data.datasets),
                                  class_names=list(data.class_names))
    reports.write_predictions_txt(wd.report("predictions"), list(data.datasets),
                                  list(data.subjects), list(data.clip_ids), labels, preds)
    reports.plot_confusion_matrix(wd.report("confusion"), conf, list(data.class_names),
                                  title=f"UF1 {headline['uf1']:.3f}  UAR {headline['uar']:.3f}")
    title = "mean-curve Spearman " + ", ".join(
        f"vs {k[3:]} {v['mean_curve']:.2f}" for k, v in intensity.items())
    if "learned_spearman_per_clip" in diagnostics:
      title += (f"\nper clip vs true: learned {diagnostics['learned_spearman_per_clip']:.2f}, "
                f"position template {diagnostics['position_baseline_spearman_per_clip']:.2f}")
    reports.plot_intensity_curves(wd.report("intensity"), merged["intensities"],
                                  mean_curves, true=data.true_intensity, title=title)
    reports.plot_training_curves(wd.report("training"), merged["history"])
    # Last: a workdir with results.json is a finished run (every report written).
    reports.write_results_json(wd.report("results"), headline, extra=extra,
                               oracle_best_epoch=oracle_block)
  print(reports.format_results_table(rows, class_names=list(data.class_names)))
  print(reports.format_diagnostics(diagnostics))
  print(reports.format_position_diagnostics(diagnostics))
  where = (f"reports in {wd.path}" if write else
           f"{wd.path} is read-only for this user: results re-printed, nothing written")
  print(f"(chance accuracy {1.0 / num_classes:.3f}; {where})")
  return {"headline": headline, **extra, "oracle_best_epoch": oracle_block}
