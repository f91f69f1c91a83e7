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


# ---------------------------------------------------------------------------------------------
# Position-controlled diagnostics. With anchored sampling the apex sits at one sampled index in
# every clip, so a curve that only knows the frame position (a clock) follows the true intensity
# almost perfectly. Every figure below is therefore reported beside what a position-only
# predictor, a shuffled control or the usual difference-image baseline scores on the same frames.


def _unit_ranks(x: np.ndarray) -> np.ndarray:
  """Each row of a `[N, T]` array as average ranks, centred and scaled to unit length (float64);
  a constant row is all zeros. The dot product of two such rows is their Spearman rho."""
  r = np.stack([_average_ranks(row) for row in x]) if len(x) else np.zeros_like(x, np.float64)
  r = r - r.mean(1, keepdims=True)
  norm = np.linalg.norm(r, axis=1, keepdims=True)
  return np.divide(r, norm, out=np.zeros_like(r), where=norm > 0)


def partial_r_given_position(learned: Any, reference: Any) -> float:
  """Correlation of two `[clips, T]` arrays once the frame position is removed from both.

  Both are rank-transformed over all clip x position values (average ranks), each rank is
  regressed on the one-hot position (i.e. its position's mean rank is subtracted), and the
  residuals are correlated (Pearson). A curve that depends only on the position scores 0; NaN
  when either residual is constant.

  >>> tent = [0.0, 1.0, 0.0]
  >>> partial_r_given_position([tent, tent], [[0.0, 1.0, 0.0], [0.0, 0.5, 0.0]])
  nan
  >>> partial_r_given_position([[0, 2, 0], [0, 1, 0]], [[0, 1.0, 0], [0, 0.5, 0]])
  1.0
  """
  a, b = np.asarray(learned, np.float64), np.asarray(reference, np.float64)
  if a.ndim != 2 or a.shape != b.shape:
    raise ValueError(f"partial_r_given_position needs two [clips, T] arrays of one shape, got "
                     f"{a.shape} and {b.shape}")
  ra = _average_ranks(a.ravel()).reshape(a.shape)
  rb = _average_ranks(b.ravel()).reshape(b.shape)
  ra, rb = ra - ra.mean(0, keepdims=True), rb - rb.mean(0, keepdims=True)
  den = np.sqrt((ra * ra).sum() * (rb * rb).sum())
  return float((ra * rb).sum() / den) if den > 1e-12 * max(1.0, ra.size ** 2) else float("nan")


def variance_explained_by_position(values: Any) -> float:
  """R^2 of a `[clips, T]` array regressed on the one-hot position: the share of its variance a
  position-only predictor (the mean curve) explains.

  >>> variance_explained_by_position([[0, 1, 0], [0, 1, 0]])
  1.0
  """
  v = np.asarray(values, np.float64)
  total = ((v - v.mean()) ** 2).sum()
  return float(1.0 - ((v - v.mean(0, keepdims=True)) ** 2).sum() / total) if total > 0 else float(
      "nan")


def motion_energy(frames: Any) -> np.ndarray:
  """Mean absolute difference of each frame from the clip's first (onset) frame: `[N, T]`.

  `frames`: `[N, T, H, W, C]` (uint8 or float). The usual spotting baseline takes the frame with
  the largest value as the apex.
  """
  f = np.asarray(frames)
  out = np.zeros(f.shape[:2], np.float64)
  for i in range(len(f)):  # per clip: no [N, T, H, W, C] float copy of the whole set
    clip = f[i].astype(np.float32)
    out[i] = np.abs(clip - clip[:1]).reshape(clip.shape[0], -1).mean(1)
  return out


def position_diagnostics(intensities: Any, *, groups: Any, apex: Any, motion: Any,
                         true_intensity: Any = None, exclude_onset: bool = True
                         ) -> dict[str, float]:
  """Does the learned intensity follow the expression, or only the frame position?

  Measured on held-out clips (each evaluated by the model that did not train on it).

  Args:
    intensities: `[N, T]` learned s_t.
    groups: `[N]` the held-out fold of each clip: the position template of a clip is the mean s
      curve of the clips of every other fold (the subjects its model was trained on).
    apex: `[N]` the apex's sampled index (the true intensity's argmax on synthetic data, the
      annotated apex on real data).
    motion: `[N, T]` `motion_energy` of the clips (the difference-image baseline).
    true_intensity: `[N, T]` or None (real data: only the apex hits are reported).
    exclude_onset: leave sampled index 0 out of every score (its onset-difference input is
      identically zero, so s there says nothing about the expression).

  Returns (all floats; `_per_clip` = mean over clips of a per-clip score, clips with a constant
  curve count as 0):
    `scored_from_index`: 1 when the onset frame is excluded, else 0;
    `apex_hit_fraction`: clips whose argmax s is within 1 sampled frame of `apex`;
    `apex_hit_fraction_position_baseline`: the same for the argmax of the position template;
    `apex_hit_fraction_difference_baseline`: the same for the frame that differs most from the
      onset frame;
    with a true intensity also
    `learned_spearman_per_clip`: Spearman(s, true) on the scored frames;
    `position_baseline_spearman_per_clip`: Spearman(position template, true);
    `shuffled_spearman_per_clip`: Spearman(s of another clip, true), averaged over every other
      clip (a control: what s scores for a clip it was not computed on);
    `partial_r_given_position`: see `partial_r_given_position`, pooled over clips;
    `true_variance_explained_by_position`: how much of the truth a position-only curve explains.
  """
  s = np.asarray(intensities, np.float64)
  if s.ndim != 2:
    raise ValueError(f"intensities must be [clips, T], got shape {s.shape}")
  n, t = s.shape
  groups, apex = np.asarray(groups), np.asarray(apex, np.int64)
  motion = np.asarray(motion, np.float64)
  if groups.shape != (n,) or apex.shape != (n,) or motion.shape != (n, t):
    raise ValueError(f"groups {groups.shape}, apex {apex.shape} and motion {motion.shape} must "
                     f"be [{n}], [{n}] and [{n}, {t}]")
  first = 1 if exclude_onset and t > 2 else 0
  template = np.zeros_like(s)
  for g in np.unique(groups):
    others = groups != g
    template[groups == g] = (s[others] if others.any() else s).mean(0)
  hits = lambda curve: float(np.mean(np.abs(first + np.argmax(curve[:, first:], 1) - apex) <= 1))
  out = {"scored_from_index": float(first),
         "apex_hit_fraction": hits(s),
         "apex_hit_fraction_position_baseline": hits(template),
         "apex_hit_fraction_difference_baseline": hits(motion)}
  if true_intensity is not None:
    true = np.asarray(true_intensity, np.float64)
    if true.shape != s.shape:
      raise ValueError(f"true_intensity {true.shape} must match intensities {s.shape}")
    ss, tt, tp = s[:, first:], true[:, first:], template[:, first:]
    ut = _unit_ranks(tt)
    rho = ut @ _unit_ranks(ss).T  # [true clip, s clip]: every pairing's Spearman rho
    off = ~np.eye(n, dtype=bool)
    out.update({
        "learned_spearman_per_clip": float(np.mean(np.diag(rho))),
        "position_baseline_spearman_per_clip": float(np.mean(
            (_unit_ranks(tp) * ut).sum(1))),
        "shuffled_spearman_per_clip": float(rho[off].mean()) if n > 1 else float("nan"),
        "partial_r_given_position": partial_r_given_position(ss, tt),
        "true_variance_explained_by_position": variance_explained_by_position(tt),
    })
  return out


def format_position_diagnostics(d: dict[str, float]) -> str:
  """One terminal line: each learned figure beside its position-only and shuffled controls."""
  frames = "onset frame excluded" if d.get("scored_from_index") else "all frames"
  parts = []
  if "learned_spearman_per_clip" in d:
    parts.append(f"per-clip Spearman vs true: learned {d['learned_spearman_per_clip']:.2f}, "
                 f"position template {d['position_baseline_spearman_per_clip']:.2f}, "
                 f"shuffled {d['shuffled_spearman_per_clip']:.2f}")
    parts.append(f"partial r given position {d['partial_r_given_position']:.2f}")
  parts.append(f"apex within 1 frame: learned {100 * d['apex_hit_fraction']:.0f}%, "
               f"position template {100 * d['apex_hit_fraction_position_baseline']:.0f}%, "
               f"largest onset difference {100 * d['apex_hit_fraction_difference_baseline']:.0f}%")
  return f"intensity vs position ({frames}): " + "; ".join(parts)
