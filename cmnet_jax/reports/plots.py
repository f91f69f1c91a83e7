"""Figures of a run (PNG, matplotlib's Agg canvas, no pyplot state): confusion matrix, intensity
curves, training curves. Each is rendered to memory and written atomically; `intensity_figure`
and `training_figure` return the matplotlib Figure itself (what the PNG shows, for tests).
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from cmnet_jax.reports.files import atomic_write


def _figure(width: float, height: float) -> Figure:
  fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
  FigureCanvasAgg(fig)
  return fig


def _save(fig: Figure, path: str | os.PathLike) -> Path:
  buf = io.BytesIO()
  fig.savefig(buf, format="png")
  return atomic_write(path, buf.getvalue())


def plot_confusion_matrix(path: str | os.PathLike, confusion: Any, class_names: Sequence[str], *,
                          title: str = "") -> Path:
  """Pooled `[C, C]` confusion matrix (rows = true class): colour = row share, text = count."""
  c = np.asarray(confusion)
  if c.ndim != 2 or c.shape != (len(class_names), len(class_names)):
    raise ValueError(f"confusion {c.shape} must be [C, C] with C = {len(class_names)} class names")
  rows = c.sum(1, keepdims=True)
  share = np.divide(c, rows, out=np.zeros(c.shape), where=rows > 0)
  size = 2.0 + 0.6 * len(class_names)
  fig = _figure(size + 1.0, size)
  ax = fig.add_subplot()
  im = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
  for i in range(c.shape[0]):
    for j in range(c.shape[1]):
      ax.text(j, i, f"{int(c[i, j])}\n{share[i, j]:.0%}", ha="center", va="center", fontsize=8,
              color="white" if share[i, j] > 0.6 else "black")
  ticks = np.arange(len(class_names))
  ax.set_xticks(ticks, list(class_names), rotation=45, ha="right")
  ax.set_yticks(ticks, list(class_names))
  ax.set_xlabel("predicted")
  ax.set_ylabel("true")
  ax.set_title(title or "pooled confusion matrix (row share)")
  fig.colorbar(im, ax=ax, fraction=0.046)
  return _save(fig, path)


def _mean_curve(curve: Any, name: str, length: int) -> np.ndarray:
  curve = np.asarray(curve, np.float64)
  curve = curve.mean(0) if curve.ndim == 2 else curve
  if curve.shape != (length,):
    raise ValueError(f"{name} curve has {curve.shape[0]} positions, learned has {length}")
  return curve


def intensity_figure(learned: Any, prototype_mean: Any, *, true: Any = None,
                     title: str = "") -> Figure:
  """The figure of `plot_intensity_curves`: every curve raw, on one intensity axis.

  The line is the mean learned s_t per frame position, the band holds the middle 80 % of the
  curves (10th to 90th percentile per position, so it never leaves the values' range), and the
  y axis is [0, 1] (widened only if a value falls outside). Nothing is rescaled: a learned
  curve that stays near 0.01 is drawn near 0.01, and the legend states its range.

  >>> fig = intensity_figure([[0.01, 0.012, 0.011], [0.009, 0.011, 0.01]], [0.1, 1.0, 0.1])
  >>> ax = fig.axes[0]
  >>> [float(y) for y in ax.get_ylim()], [round(float(y), 4) for y in ax.lines[0].get_ydata()]
  ([0.0, 1.0], [0.0095, 0.0115, 0.0105])
  """
  learned = np.asarray(learned, np.float64)
  if learned.ndim != 2:
    raise ValueError(f"learned intensities must be [clips, time], got shape {learned.shape}")
  n, length = learned.shape
  t = np.arange(length)
  curves = {"prototype mean": (_mean_curve(prototype_mean, "prototype mean", length), "s--")}
  if true is not None:
    curves["true intensity (generator)"] = (_mean_curve(true, "true", length), "^:")
  fig = _figure(6.0, 4.0)
  ax = fig.add_subplot()
  mean = np.nanmean(learned, 0)
  lo_band, hi_band = np.nanpercentile(learned, [10, 90], axis=0)
  lo, hi = float(np.nanmin(learned)), float(np.nanmax(learned))
  ax.plot(t, mean, "o-", color="C0",
          label=f"learned s_t, mean of {n} (values {lo:.3g} to {hi:.3g})")
  ax.fill_between(t, lo_band, hi_band, alpha=0.2, color="C0",
                  label="learned s_t, 10-90 % of curves")
  for i, (name, (curve, style)) in enumerate(curves.items(), start=1):
    ax.plot(t, curve, style, color=f"C{i}", label=name)
  values = np.concatenate([learned.ravel()] + [c for c, _ in curves.values()])
  low, high = min(0.0, float(np.nanmin(values))), max(1.0, float(np.nanmax(values)))
  ax.set_ylim(low, high)
  ax.set_xticks(t)
  ax.set_xlabel(f"sampled frame position (0 = onset, {length - 1} = offset)")
  ax.set_ylabel("intensity (raw, not rescaled)")
  ax.set_title(title or "intensity per frame position")
  ax.legend(fontsize=8)
  return fig


def plot_intensity_curves(path: str | os.PathLike, learned: Any, prototype_mean: Any, *,
                          true: Any = None, title: str = "") -> Path:
  """Mean learned intensity per frame position against the prototype (and the true intensity).

  Args:
    learned: `[clips, time]` learned intensities s_t.
    prototype_mean: `[time]` or `[clips, time]` prototype means mu_t.
    true: optional `[clips, time]` or `[time]` true intensity (synthetic data).
    title: e.g. the Spearman correlations from `intensity_spearman`.

  Every curve is drawn as it is (see `intensity_figure`).
  """
  return _save(intensity_figure(learned, prototype_mean, true=true, title=title), path)


# Panel titles of the history entries the training loop logs (others: their name); the
# objective and every registered loss term are losses, 'accuracy' is on the training batches,
# other entries are a term's metrics ('<term>_<metric>').
_TITLES = {"loss": "objective (weighted sum of the terms)", "ce": "ce: cross-entropy",
           "id": "id: Intensity Distillation", "wilcoxon": "wilcoxon: Wilcoxon rank-sum",
           "accuracy": "training-batch accuracy"}


def training_figure(history: Mapping[str, Any], *, title: str = "") -> Figure:
  """The figure of `plot_training_curves`: one panel per logged value, integer epochs.

  Every value is a mean over an epoch's training batches (augmented clips of the training
  subjects): the accuracy panel is training-batch accuracy, not a held-out figure.

  >>> fig = training_figure({'accuracy': [[0.2, 0.4, 0.5]], 'ce': [1.6, 1.2, 1.1]})
  >>> [ax.get_ylabel() for ax in fig.axes]
  ['training-batch accuracy', 'loss (mean over the epoch)']
  >>> [float(x) for x in fig.axes[1].get_xticks() if 1 <= x <= 3]
  [1.0, 2.0, 3.0]
  """
  if not history:
    raise ValueError("training curves: history is empty")
  from cmnet_jax import losses  # pylint: disable=g-import-not-at-top  (the registered terms)
  loss_names = {"loss", *_TITLES, *losses.TERMS} - {"accuracy"}
  fig = _figure(4.0 * min(len(history), 3), 3.2 * -(-len(history) // 3))
  for k, (name, values) in enumerate(history.items()):
    v = np.asarray(values, np.float64)
    if v.ndim not in (1, 2):
      raise ValueError(f"history[{name!r}] must be [epochs] or [folds, epochs], got {v.shape}")
    ax = fig.add_subplot(-(-len(history) // 3), min(len(history), 3), k + 1)
    epochs = np.arange(1, v.shape[-1] + 1)
    marker = "o" if len(epochs) <= 12 else None
    if v.ndim == 2:
      valid = np.isfinite(v).sum(0)
      mean = np.nansum(v, 0) / np.maximum(valid, 1)
      sd = np.sqrt(np.nansum((v - mean) ** 2, 0) / np.maximum(valid, 1))
      mean = np.where(valid > 0, mean, np.nan)
      ax.fill_between(epochs, mean - sd, mean + sd, alpha=0.25, label="+- 1 sd over folds")
      ax.plot(epochs, mean, marker=marker, label=f"mean of {int(valid.max())} folds")
      ax.legend(fontsize=7)
    else:
      ax.plot(epochs, v, marker=marker)
    ax.set_title(_TITLES.get(name, name), fontsize=9)
    if name == "accuracy":
      ax.set_ylabel("training-batch accuracy")
      ax.set_ylim(0.0, 1.0)
    else:
      ax.set_ylabel(f"{'loss' if name in loss_names else name} (mean over the epoch)")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
  if title:
    fig.suptitle(title)
  return fig


def plot_training_curves(path: str | os.PathLike, history: Mapping[str, Any], *,
                         title: str = "") -> Path:
  """One panel per loss term: `[epochs]` as a line, `[folds, epochs]` as mean with a +-1 sd band.

  NaN entries (padded folds, epochs not run) are ignored in the mean and band. See
  `training_figure`.
  """
  return _save(training_figure(history, title=title), path)
