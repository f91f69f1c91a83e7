"""Recognition metrics from a pooled confusion matrix: accuracy, UF1, UAR (MEGC definitions).

Predictions of every LOSO fold are pooled into one confusion matrix `C[true, pred]` (counts);
every figure is computed once from it (never averaged over folds):

  accuracy = sum_c TP_c / N
  F1_c     = 2 TP_c / (2 TP_c + FP_c + FN_c),   UF1 = (1/C) sum_c F1_c
  recall_c = TP_c / n_c,                        UAR = (1/C) sum_c recall_c

**Rule for empty classes.** Both means run over all C classes (as MEGC does). A ratio whose
denominator is 0 counts as 0: a class with no samples and no predictions has F1 = 0 and recall = 0;
a class with no samples but some (necessarily false) predictions has F1 = 0 and recall = 0. This
is sklearn's `f1_score` / `recall_score` with `labels=range(C), average='macro', zero_division=0`:
never an inflated figure. Pooled over all LOSO folds every class normally occurs and the rule is
moot; for per-subject rows it lowers UF1/UAR of subjects that lack classes (read `support`).

`confusion_matrix` works on NumPy arrays (host) and on JAX arrays (jit/vmap-able, e.g. one
matrix per fold on the device, then summed on the host).
"""
from __future__ import annotations

from typing import Any, Hashable, Sequence

import jax
import jax.numpy as jnp
import numpy as np


def _is_jax(*xs: Any) -> bool:
  return any(isinstance(x, jax.Array) for x in xs)  # tracers are jax.Array too


def confusion_matrix(labels: Any, predictions: Any, num_classes: int, *, where: Any = None) -> Any:
  """Counts `C[i, j]` = number of samples with true class i predicted as class j.

  Args:
    labels: int `[batch, ...]` true classes in `[0, num_classes)`.
    predictions: int, same shape as `labels`.
    num_classes: C (static under jit).
    where: optional bool mask, same shape; False entries are not counted (padded clips/folds).

  Returns:
    `[C, C]` counts: int64 NumPy for NumPy inputs; int32 `jax.Array` when any input is a JAX
    array or tracer. NumPy inputs with a class outside `[0, C)` (where counted) raise ValueError;
    under JAX, where nothing can raise, such entries are dropped (not counted) instead.

  >>> confusion_matrix([0, 1, 1, 2], [0, 1, 2, 2], 3)
  array([[1, 0, 0],
         [0, 1, 1],
         [0, 0, 1]])
  >>> int(confusion_matrix(jnp.array([0, -1]), jnp.array([0, 0]), 2).sum())  # -1 dropped
  1
  """
  if num_classes < 1:
    raise ValueError(f"num_classes must be >= 1, got {num_classes}")
  if _is_jax(labels, predictions, where):
    labels, predictions = jnp.asarray(labels), jnp.asarray(predictions)
    if labels.shape != predictions.shape:
      raise ValueError(f"labels {labels.shape} and predictions {predictions.shape} differ in shape")
    mask = jnp.ones(labels.shape, bool) if where is None else jnp.broadcast_to(where, labels.shape)
    valid = mask & (labels >= 0) & (labels < num_classes) & (predictions >= 0) & (
        predictions < num_classes)
    flat = jnp.where(valid, labels * num_classes + predictions, 0).reshape(-1)
    counts = jnp.zeros((num_classes * num_classes,), jnp.int32).at[flat].add(
        valid.reshape(-1).astype(jnp.int32))
    return counts.reshape(num_classes, num_classes)
  labels, predictions = np.asarray(labels), np.asarray(predictions)
  if labels.shape != predictions.shape:
    raise ValueError(f"labels {labels.shape} and predictions {predictions.shape} differ in shape")
  mask = np.ones(labels.shape, bool) if where is None else np.broadcast_to(where, labels.shape)
  labels, predictions = labels[mask], predictions[mask]
  for name, x in (("labels", labels), ("predictions", predictions)):
    if x.size and not np.issubdtype(x.dtype, np.integer):
      raise ValueError(f"{name} must be integers, got dtype {x.dtype}")
    bad = (x < 0) | (x >= num_classes)
    if bad.any():
      raise ValueError(f"{name} must lie in [0, {num_classes}); got {x[bad][:5].tolist()} "
                       f"(first at counted position {int(np.argmax(bad))})")
  flat = labels.astype(np.int64) * num_classes + predictions.astype(np.int64)
  return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
  """num / den with 0/0 (and x/0) counted as 0 (the module's empty-class rule)."""
  return np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den > 0)


def summarize(confusion: Any) -> dict[str, Any]:
  """Accuracy, UF1, UAR and per-class figures from one pooled `[C, C]` confusion matrix.

  Returns:
    dict with `accuracy`, `uf1`, `uar`, `num_samples` (Python numbers), `per_class_f1`,
    `per_class_recall` (float64 `[C]`) and `support` (int64 `[C]`, samples per true class).
    Empty classes follow the module's rule (0/0 counts as 0, means over all C classes).

  >>> s = summarize(np.array([[2, 0], [1, 1]]))
  >>> round(s['accuracy'], 4), round(s['uf1'], 4), round(s['uar'], 4)
  (0.75, 0.7333, 0.75)
  """
  c = np.asarray(confusion)
  if c.ndim != 2 or c.shape[0] != c.shape[1] or c.shape[0] < 1:
    raise ValueError(f"confusion must be a square [C, C] matrix, got shape {c.shape}")
  if not np.issubdtype(c.dtype, np.integer) or (c < 0).any():
    raise ValueError(f"confusion must hold non-negative integer counts, got dtype {c.dtype}")
  c = c.astype(np.int64)
  total = int(c.sum())
  if total == 0:
    raise ValueError("confusion matrix is empty (no samples): metrics are undefined")
  tp = np.diag(c).astype(np.float64)
  support = c.sum(axis=1)
  predicted = c.sum(axis=0)
  f1 = _ratio(2.0 * tp, 2.0 * tp + (predicted - tp) + (support - tp))
  recall = _ratio(tp, support.astype(np.float64))
  return {
      "accuracy": float(tp.sum() / total),
      "uf1": float(f1.mean()),
      "uar": float(recall.mean()),
      "num_samples": total,
      "per_class_f1": f1,
      "per_class_recall": recall,
      "support": support,
  }


def per_group(labels: Any, predictions: Any, groups: Sequence[Hashable],
              num_classes: int) -> dict[Hashable, dict[str, Any]]:
  """`summarize` of each group's part of the pooled predictions.

  Use it for the composite's per-database figures (groups = database names) and for per-subject
  rows (groups = subject ids, or `(database, subject)` tuples).

  Args:
    labels, predictions: int `[clips]`.
    groups: `[clips]` hashable group keys (str, int, tuple).
    num_classes: C.

  Returns:
    {group: summary dict}, groups in order of first appearance.

  >>> r = per_group([0, 1, 1, 0], [0, 1, 0, 0], ['a', 'a', 'b', 'b'], 2)
  >>> list(r), r['a']['accuracy'], r['b']['accuracy']
  (['a', 'b'], 1.0, 0.5)
  """
  labels, predictions = np.asarray(labels), np.asarray(predictions)
  keys = list(groups)
  if not (labels.ndim == 1 and labels.shape == predictions.shape and len(keys) == len(labels)):
    raise ValueError(f"labels {labels.shape}, predictions {predictions.shape} and groups "
                     f"(length {len(keys)}) must be 1-D of one length")
  members: dict[Hashable, list[int]] = {}
  for i, g in enumerate(keys):
    members.setdefault(g, []).append(i)
  return {g: summarize(confusion_matrix(labels[idx], predictions[idx], num_classes))
          for g, idx in members.items()}
