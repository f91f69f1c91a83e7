"""The Wilcoxon rank-sum (Wrst) loss: network intensities against prototype draws."""
import functools
from typing import Any, Optional

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import erfinv

from cmnet_jax.losses import validation
from cmnet_jax.losses.ranking import wilcoxon_rank_sum

SEGMENTS = ("whole", "split")
PENALTIES = ("p_hinge", "z_hinge")


def critical_z(margin: float) -> jax.Array:
  """z_crit with erfc(z_crit / sqrt 2) = m: the two-sided test rejects at level m iff |z| > z_crit.

  >>> round(float(critical_z(0.05)), 4)
  1.96
  """
  return math.sqrt(2.0) * erfinv(1.0 - jnp.asarray(margin, jnp.float32))


def wilcoxon_loss(
    intensities: jax.Array,
    prototype_samples: jax.Array,
    *,
    margin: float = 0.05,
    temperature: float,
    penalty: str = "p_hinge",
    segments: str = "whole",
    apex_index: Any = None,
    where: Optional[jax.Array] = None,
    standardize: bool = True,
    chunk_size: Optional[int] = None,
) -> jax.Array:
  """Per-clip Wrst loss: a hinge on the smooth rank-sum test of s against prototype draws v.

  For each clip, s = `intensities[b]` (the network's per-frame intensities s_t) and v = the
  prototype draws `prototype_samples[b]` (from `sample_prototype`) are compared with
  `wilcoxon_rank_sum(s, v, temperature=...)` (z its statistic, p its two-sided p-value), and
  - `penalty='p_hinge'` (the paper's form): L = max(0, m - p);
  - `penalty='z_hinge'`: L = max(0, |z| - z_crit), z_crit = `critical_z(m)` (1.96 at m = 0.05).
  Both are zero exactly on the clips where the test does not reject at level m (p >= m, i.e.
  |z| <= z_crit), and non-zero on the same clips. They differ where it rejects: the p-hinge is
  bounded by m and its gradient dp/dz = -sqrt(2/pi) exp(-z^2/2) vanishes as |z| grows (for
  T = 9 against 9 draws, |z| <= 3.58, so L <= 0.0497 at m = 0.05, with gradient ~0.001 at the
  far end); the z-hinge grows linearly with |z| and keeps a unit gradient wherever the test
  rejects (a constant 0.001 or 0.999 intensity is penalised 1.62, not 0.05).

  What a rank-sum test constrains, and what not: it compares the *location* of the pooled
  values of s against the prototype's values, so s that sits far below or above the prototype
  (e.g. a saturated squeeze) is penalised. It is blind to which frame holds which value: any
  permutation of s over the frames, including the inverted curve (low at the apex), gives the
  same statistic, in 'whole' and in 'split' (each segment's values are compared as a set). Use
  an order-aware term (`order_loss`) beside it to calibrate the trend.
  - `segments='whole'`: one test on all valid frames.
  - `segments='split'`: the rising segment (positions t <= apex) and the falling segment
    (t >= apex) are tested separately (each with the draws of its own positions) and the two
    losses are averaged; an empty segment has p = 1 (loss 0).
  Masked frames (`where` False) are left out of s and their draws out of v; a clip with no
  valid frame has loss 0.

  Args:
    intensities: s, `[batch, T]`.
    prototype_samples: v, `[batch, T]` (one draw per frame position) or `[batch, R, T]`
      (R draws per position).
    margin: m, the p-value below which a clip is penalised.
    penalty: 'p_hinge' or 'z_hinge' (see above).
    temperature: smooth-rank temperature kappa, in pooled standard deviations when
      `standardize` (see `wilcoxon_rank_sum`); 0 gives the exact, gradient-free test.
    segments: 'whole' or 'split'.
    apex_index: int `[batch]` or scalar, the apex position; required for 'split'.
    where: optional bool `[batch, T]`, True for valid frames.
    standardize: passed to `wilcoxon_rank_sum`.
    chunk_size: passed to `wilcoxon_rank_sum` (bounded-memory form for long clips).

  Returns:
    loss per clip, `[batch]`.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> s = jnp.array([[0.1, 0.5, 1.0, 0.5, 0.1], [5., 5., 5., 5., 5.]])
    >>> v = jnp.array([[0.1, 0.55, 1.0, 0.55, 0.1]] * 2)
    >>> [round(l, 3) for l in wilcoxon_loss(s, v, temperature=0.).tolist()]  # 2nd clip: p = 0.009
    [0.0, 0.041]
    >>> z = wilcoxon_loss(s, v, temperature=0., penalty='z_hinge')   # |z| = 2.61 > 1.96
    >>> [round(l, 3) for l in z.tolist()]
    [0.0, 0.651]
  """
  validation.check_rank("wilcoxon_loss: intensities", intensities, (2,), "[batch, T]")
  validation.check_rank(
      "wilcoxon_loss: prototype_samples", prototype_samples, (2, 3), "[batch, T] or [batch, R, T]")
  validation.check_option("wilcoxon_loss: segments", segments, SEGMENTS)
  validation.check_option("wilcoxon_loss: penalty", penalty, PENALTIES)
  batch, num_frames = jnp.shape(intensities)
  samples = prototype_samples if jnp.ndim(prototype_samples) == 3 else prototype_samples[:, None]
  if (samples.shape[0], samples.shape[2]) != (batch, num_frames):
    raise ValueError(
        f"wilcoxon_loss: prototype_samples must be [batch, T] or [batch, R, T] with batch, T = "
        f"{(batch, num_frames)} from intensities, got {jnp.shape(prototype_samples)}.")
  mask = validation.mask_or_ones("wilcoxon_loss: where", where, (batch, num_frames), "[batch, T]")
  if segments == "split":
    if apex_index is None:
      raise ValueError("wilcoxon_loss: segments='split' needs apex_index ([batch] or scalar).")
    validation.check_rank("wilcoxon_loss: apex_index", apex_index, (0, 1), "[batch] or scalar")
    if jnp.ndim(apex_index) == 1:
      validation.check_shape("wilcoxon_loss: apex_index", apex_index, (batch,), "[batch]")
    apex = jnp.broadcast_to(jnp.asarray(apex_index, jnp.int32), (batch,))
  else:
    apex = jnp.zeros((batch,), jnp.int32)
  exact = isinstance(temperature, (int, float)) and temperature == 0
  return _wilcoxon_loss(intensities, samples, mask, apex, margin, 0.0 if exact else temperature,
                        exact=exact, penalty=penalty, segments=segments,
                        standardize=standardize, chunk_size=chunk_size)


@functools.partial(
    jax.jit, static_argnames=("exact", "penalty", "segments", "standardize", "chunk_size"))
def _wilcoxon_loss(intensities, samples, mask, apex, margin, temperature, *, exact, penalty,
                   segments, standardize, chunk_size):
  """Numerics of `wilcoxon_loss` after argument checks (jitted: one compile per shape)."""
  num_draws, num_frames = samples.shape[1:]

  def hinge(s, v, valid):
    result = wilcoxon_rank_sum(
        s, v.reshape(-1), temperature=0.0 if exact else temperature, x_where=valid,
        y_where=jnp.broadcast_to(valid, (num_draws, num_frames)).reshape(-1),
        standardize=standardize, chunk_size=chunk_size)
    if penalty == "z_hinge":
      return jax.nn.relu(jnp.abs(result.zscore) - critical_z(margin))
    return jax.nn.relu(margin - result.pvalue)

  def per_clip(s, v, valid, a):
    if segments == "whole":
      return hinge(s, v, valid)
    t = jnp.arange(num_frames)
    return 0.5 * (hinge(s, v, valid & (t <= a)) + hinge(s, v, valid & (t >= a)))

  return jax.vmap(per_clip)(intensities, samples, mask, apex)
