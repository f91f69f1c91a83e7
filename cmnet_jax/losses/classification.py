"""Softmax cross-entropy for the expression classifier."""
from typing import Optional

import jax
import jax.numpy as jnp

from cmnet_jax.losses import validation


def softmax_cross_entropy(
    logits: jax.Array,
    labels: jax.Array,
    *,
    label_smoothing: float = 0.0,
    class_weights: Optional[jax.Array] = None,
    where: Optional[jax.Array] = None,
) -> jax.Array:
  """Per-example cross-entropy of integer labels, with label smoothing and class weights.

  With C classes, a = `label_smoothing` and targets t_c = (1 - a) [c = y] + a / C:
    L_b = -w_{y_b} sum_c t_c log softmax(logits_b)_c,
  where w = `class_weights` (all ones by default). Examples with `where` False get 0. Labels
  must lie in [0, C); out-of-range labels cannot be checked inside `jax.jit` (a label >= C gives
  an all-zero one-hot target).

  Args:
    logits: `[batch, C]`.
    labels: int `[batch]`.
    label_smoothing: a in [0, 1].
    class_weights: optional `[C]`.
    where: optional bool `[batch]`.

  Returns:
    loss per example, `[batch]`.

  Example:
    >>> import jax.numpy as jnp
    >>> logits = jnp.array([[2., 0., 0.], [0., 0., 0.]])
    >>> [round(v, 4) for v in softmax_cross_entropy(logits, jnp.array([0, 2])).tolist()]  # log(1+2/e^2), log 3
    [0.2395, 1.0986]
  """
  validation.check_rank("softmax_cross_entropy: logits", logits, (2,), "[batch, C]")
  batch, num_classes = jnp.shape(logits)
  validation.check_shape("softmax_cross_entropy: labels", labels, (batch,), "[batch]")
  if not jnp.issubdtype(jnp.result_type(labels), jnp.integer):
    raise ValueError(
        f"softmax_cross_entropy: labels must be integers, got dtype {jnp.result_type(labels)}.")
  if not 0.0 <= label_smoothing <= 1.0:
    raise ValueError(
        f"softmax_cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing!r}.")
  valid = validation.mask_or_ones("softmax_cross_entropy: where", where, (batch,), "[batch]")
  if class_weights is not None:
    validation.check_shape("softmax_cross_entropy: class_weights", class_weights,
                           (num_classes,), "[C]")
  return _cross_entropy(logits, jnp.asarray(labels, jnp.int32), label_smoothing, class_weights,
                        valid)


@jax.jit
def _cross_entropy(logits, labels, label_smoothing, class_weights, valid):
  """Numerics of `softmax_cross_entropy` after argument checks."""
  num_classes = logits.shape[-1]
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  targets = ((1.0 - label_smoothing) * jax.nn.one_hot(labels, num_classes, dtype=log_probs.dtype)
             + label_smoothing / num_classes)
  loss = -jnp.sum(targets * log_probs, axis=-1)
  if class_weights is not None:
    loss = loss * jnp.asarray(class_weights, log_probs.dtype)[labels]
  return jnp.where(valid, loss, 0.0)
