"""How well the learned per-frame intensities follow the prototype / true intensity: Spearman rho.

Spearman's rho is Pearson's correlation of the ranks (ties get their average rank), so it scores
the *trend* over frame positions, which is all the Wilcoxon loss asks for (the scale of the
learned intensity s_t is arbitrary).
"""
from __future__ import annotations

from typing import Any

import numpy as np


def _average_ranks(x: np.ndarray) -> np.ndarray:
  """1-based ranks of a 1-D array, ties sharing the mean of their ranks (float64)."""
  order = np.argsort(x, kind="mergesort")
  sorted_x = x[order]
  starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
  ends = np.r_[starts[1:], len(x)]
  ranks = np.empty(len(x), np.float64)
  ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
  return ranks


def spearman(x: Any, y: Any) -> float:
  """Spearman's rho of two 1-D samples `[n]`; NaN when either is constant (rho undefined).

  rho = pearson(rank(x), rank(y)), with average ranks for ties.

  >>> spearman([1, 2, 3, 4], [10, 20, 30, 25])
  0.8
  """
  x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
  if x.shape != y.shape or x.size < 2:
    raise ValueError(f"spearman needs two 1-D samples of one length >= 2, got {x.shape}, {y.shape}")
  rx, ry = _average_ranks(x), _average_ranks(y)
  rx, ry = rx - rx.mean(), ry - ry.mean()
  den = np.sqrt((rx * rx).sum() * (ry * ry).sum())
  return float((rx * ry).sum() / den) if den > 0 else float("nan")


def intensity_spearman(learned: Any, reference: Any) -> dict[str, float]:
  """Spearman agreement of learned intensities with a reference curve, three ways.

  Args:
    learned: `[clips, time]` per-frame intensities s_t of the evaluated clips.
    reference: `[clips, time]` (true intensity, prototype mean per clip) or `[time]` (one curve).

  Returns:
    `mean_curve`: rho between the clip-mean curves over the T frame positions;
    `per_clip_mean`: mean over clips of each clip's rho over time (clips where either curve is
    constant are left out; `per_clip_valid` counts the others);
    `pooled`: rho over all clip x position pairs.

  >>> r = intensity_spearman([[0, 1, 2, 1, 0], [0, 1, 3, 1, 0]], [0.1, 0.5, 1.0, 0.5, 0.1])
  >>> r['mean_curve'], r['per_clip_valid']
  (1.0, 2)
  """
  learned = np.asarray(learned, np.float64)
  if learned.ndim != 2:
    raise ValueError(f"learned intensities must be [clips, time], got shape {learned.shape}")
  reference = np.broadcast_to(np.asarray(reference, np.float64), learned.shape) if np.ndim(
      reference) == 1 else np.asarray(reference, np.float64)
  if reference.shape != learned.shape:
    raise ValueError(f"reference {reference.shape} must be [time] or match learned "
                     f"{learned.shape}")
  per_clip = np.array([spearman(a, b) for a, b in zip(learned, reference)])
  valid = np.isfinite(per_clip)
  return {
      "mean_curve": spearman(learned.mean(0), reference.mean(0)),
      "per_clip_mean": float(per_clip[valid].mean()) if valid.any() else float("nan"),
      "per_clip_valid": int(valid.sum()),
      "pooled": spearman(learned.ravel(), reference.ravel()),
  }


# s_t outside [SATURATION_LOW, SATURATION_HIGH] counts as saturated (the sigmoid's flat ends).
SATURATION_LOW, SATURATION_HIGH = 0.01, 0.99


def intensity_diagnostics(intensities: Any, logits: Any, ablated_logits: Any, *,
                          wilcoxon_active: Any = None, true_intensity: Any = None,
                          prototype_mean: Any = None) -> dict[str, float]:
  """Is the intensity pathway alive? Measured on the held-out clips of a run.

  Args:
    intensities: `[clips, T]` held-out s_t (what the classifier saw).
    logits: `[clips, C]` held-out logits.
    ablated_logits: `[clips, C]` logits with each clip's s_t replaced by its clip mean.
    wilcoxon_active: `[folds]` share of training clips with a non-zero rank-sum hinge in the
      last epoch, per fold (or None).
    true_intensity: `[clips, T]` generator's intensity (synthetic data) or None.
    prototype_mean: `[clips, T]` the prototype mean of each clip, or None.

  Returns:
    `saturated_fraction` (share of s_t outside [0.01, 0.99]), `within_clip_std` (mean over clips
    of the standard deviation of s_t over time), `gate_ablation_changed_fraction` (share of
    predictions that change under the ablation), `wilcoxon_active_fraction`, and
    `spearman_true_per_clip` / `spearman_prototype_per_clip` (mean per-clip Spearman rho; clips
    with a constant curve count as 0, so a switched-off pathway cannot score).

  >>> s = [[0.1, 0.5, 0.9], [0.001, 0.002, 0.001]]
  >>> d = intensity_diagnostics(s, [[1, 0], [0, 1]], [[1, 0], [1, 0]],
  ...                           true_intensity=[[0, 1, 2], [0, 1, 2]])
  >>> d['saturated_fraction'], d['gate_ablation_changed_fraction'], d['spearman_true_per_clip']
  (0.5, 0.5, 0.5)
  """
  s = np.asarray(intensities, np.float64)
  if s.ndim != 2:
    raise ValueError(f"intensities must be [clips, T], got shape {s.shape}")
  out = {
      "saturated_fraction": float(np.mean((s < SATURATION_LOW) | (s > SATURATION_HIGH))),
      "within_clip_std": float(np.mean(np.std(s, axis=1))),
      "gate_ablation_changed_fraction": float(np.mean(
          np.argmax(np.asarray(logits), -1) != np.argmax(np.asarray(ablated_logits), -1))),
      "wilcoxon_active_fraction": (float(np.mean(wilcoxon_active))
                                   if wilcoxon_active is not None else float("nan")),
  }
  for name, reference in (("true", true_intensity), ("prototype", prototype_mean)):
    if reference is not None:
      rho = np.array([spearman(a, b) for a, b in zip(s, np.asarray(reference, np.float64))])
      out[f"spearman_{name}_per_clip"] = float(np.mean(np.nan_to_num(rho, nan=0.0)))
  return out


def format_diagnostics(d: dict[str, float]) -> str:
  """One terminal line of the intensity diagnostics."""
  parts = [f"saturated {d['saturated_fraction']:.2f}", f"within-clip sd {d['within_clip_std']:.3f}",
           f"gate ablation changes {100 * d['gate_ablation_changed_fraction']:.1f}% of predictions",
           f"rank-sum hinge active on {100 * d['wilcoxon_active_fraction']:.1f}% of training clips"]
  if "spearman_true_per_clip" in d:
    parts.append(f"Spearman vs true intensity per clip {d['spearman_true_per_clip']:.2f}")
  if "spearman_prototype_per_clip" in d:
    parts.append(f"vs prototype {d['spearman_prototype_per_clip']:.2f}")
  return "intensity: " + ", ".join(parts)
