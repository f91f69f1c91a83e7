"""Figures of a run (PNG, matplotlib's Agg canvas, no pyplot state): confusion matrix, intensity
curves, training curves. Each is rendered to memory and written atomically.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

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


def _unit_scale(mean: np.ndarray) -> tuple[float, float]:
  """Offset and scale mapping a curve's min..max onto 0..1 (scale 1 for a flat curve)."""
  lo, hi = float(np.min(mean)), float(np.max(mean))
  return lo, (hi - lo) if hi > lo else 1.0


def plot_intensity_curves(path: str | os.PathLike, learned: Any, prototype_mean: Any, *,
                          true: Any = None, title: str = "") -> Path:
  """Mean learned intensity per frame position against the prototype (and the true intensity).

  Args:
    learned: `[clips, time]` learned intensities s_t.
    prototype_mean: `[time]` or `[clips, time]` prototype means mu_t.
    true: optional `[clips, time]` or `[time]` true intensity (synthetic data).
    title: e.g. the Spearman correlations from `intensity_spearman`.

  Every curve is min-max scaled to [0, 1] (the learned scale is arbitrary: only the trend
  counts); the band is the learned mean +- one standard deviation over clips, same scaling.
  """
  learned = np.asarray(learned, np.float64)
  if learned.ndim != 2:
    raise ValueError(f"learned intensities must be [clips, time], got shape {learned.shape}")
  t = np.arange(learned.shape[1])
  fig = _figure(6.0, 4.0)
  ax = fig.add_subplot()
  mean, std = learned.mean(0), learned.std(0)
  lo, scale = _unit_scale(mean)
  ax.fill_between(t, (mean - std - lo) / scale, (mean + std - lo) / scale, alpha=0.2,
                  color="C0", label="learned +- 1 sd")
  ax.plot(t, (mean - lo) / scale, "o-", color="C0", label=f"learned (mean of {len(learned)})")
  for name, curve, style in (("prototype mean", prototype_mean, "s--"), ("true", true, "^:")):
    if curve is None:
      continue
    curve = np.asarray(curve, np.float64)
    curve = curve.mean(0) if curve.ndim == 2 else curve
    if curve.shape != t.shape:
      raise ValueError(f"{name} curve has {curve.shape[0]} positions, learned has {len(t)}")
    lo_c, scale_c = _unit_scale(curve)
    ax.plot(t, (curve - lo_c) / scale_c, style, label=name)
  ax.set_xlabel("frame position")
  ax.set_ylabel("intensity (min-max scaled)")
  ax.set_title(title or "intensity per frame position")
  ax.legend(fontsize=8)
  return _save(fig, path)


def plot_training_curves(path: str | os.PathLike, history: Mapping[str, Any], *,
                         title: str = "") -> Path:
  """One panel per loss term: `[epochs]` as a line, `[folds, epochs]` as mean with a +-1 sd band.

  NaN entries (padded folds, epochs not run) are ignored in the mean and band.
  """
  if not history:
    raise ValueError("training curves: history is empty")
  fig = _figure(4.0 * min(len(history), 3), 3.2 * -(-len(history) // 3))
  for k, (name, values) in enumerate(history.items()):
    v = np.asarray(values, np.float64)
    if v.ndim not in (1, 2):
      raise ValueError(f"history[{name!r}] must be [epochs] or [folds, epochs], got {v.shape}")
    ax = fig.add_subplot(-(-len(history) // 3), min(len(history), 3), k + 1)
    epochs = np.arange(1, v.shape[-1] + 1)
    if v.ndim == 2:
      valid = np.isfinite(v).sum(0)
      mean = np.nansum(v, 0) / np.maximum(valid, 1)
      sd = np.sqrt(np.nansum((v - mean) ** 2, 0) / np.maximum(valid, 1))
      mean = np.where(valid > 0, mean, np.nan)
      ax.fill_between(epochs, mean - sd, mean + sd, alpha=0.25, label="+- 1 sd")
      ax.plot(epochs, mean, label=f"mean of {int(valid.max())}")
      ax.legend(fontsize=7)
    else:
      ax.plot(epochs, v)
    ax.set_title(name)
    ax.set_xlabel("epoch")
  if title:
    fig.suptitle(title)
  return _save(fig, path)
