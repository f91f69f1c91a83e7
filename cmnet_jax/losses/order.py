"""Order-aware intensity calibration: a smooth Spearman rank correlation against the prototype.

The rank-sum test (`wilcoxon_loss`) compares the values of s_t and of the prototype as two sets,
so it cannot tell which frame holds which value. Spearman's rho correlates the *ranks over time*
of the clip's intensities with those of a target curve (the prototype mean: low at onset and
offset, 1 at the apex), so it rewards the onset -> apex -> offset order and, unlike any
rank-sum statistic, it changes sign when the curve is inverted. The smooth ranks are those of
`soft_rank` (R_i = 1/2 + sum_j sigmoid((u_i - u_j) / kappa); `ranking.smooth_ranks`, and
`ranking.exact_ranks` for the target and at temperature 0, where the result is exactly
`scipy.stats.spearmanr`).
"""
import functools
from typing import Optional

import jax
import jax.numpy as jnp

from cmnet_jax.losses import validation
from cmnet_jax.losses.ranking import exact_ranks, masked_std, smooth_ranks


def _pearson(a, b, valid):
  """Pearson correlation over the valid entries; 0 when either side has no variance."""
  w = valid.astype(a.dtype)
  count = jnp.maximum(jnp.sum(w), 1.0)
  a = jnp.where(valid, a - jnp.sum(w * a) / count, 0.0)
  b = jnp.where(valid, b - jnp.sum(w * b) / count, 0.0)
  saa, sbb = jnp.sum(a * a), jnp.sum(b * b)
  ok = (saa > 0) & (sbb > 0)
  den = jnp.sqrt(jnp.where(ok, saa * sbb, 1.0))
  return jnp.where(ok, jnp.sum(a * b) / den, 0.0)


def soft_spearman(
    x: jax.Array,
    y: jax.Array,
    *,
    temperature: float,
    where: Optional[jax.Array] = None,
    standardize: bool = True,
) -> jax.Array:
  """Smooth Spearman rank correlation of x with the target y: `scipy.stats.spearmanr` at 0.

  rho = pearson(R(x), rank(y)) over the valid entries, where R(x) are the smooth ranks
  R_i = 1/2 + sum_{j valid} sigmoid((u_i - u_j) / kappa), u = x / sd(x) when `standardize` (so
  kappa is in standard deviations and rho is invariant to x -> a x + b, a > 0), and rank(y) are
  y's exact average ranks (y is a fixed target: no gradient flows into it). With fewer than two
  valid entries, or a constant side, rho = 0. Memory O(n^2); lift to batches with `jax.vmap`.

  Args:
    x: the values to calibrate (e.g. a clip's intensities s_t), `[n]`.
    y: the target order (e.g. the prototype mean), `[n]`.
    temperature: kappa >= 0; 0 (a Python number) gives exact ranks (no useful gradient).
    where: optional bool `[n]`, True for valid entries.
    standardize: divide x by its standard deviation first (see above).

  Returns:
    rho, a float scalar in [-1, 1].

  Example:
    >>> import jax.numpy as jnp
    >>> y = jnp.array([0.1, 0.55, 1.0, 0.55, 0.1])
    >>> round(float(soft_spearman(jnp.array([0., 1., 3., 2., 1.]), y, temperature=0.)), 4)
    0.8652
    >>> round(float(soft_spearman(1. - y, y, temperature=0.)), 4)   # the inverted curve
    -1.0
  """
  validation.check_rank("soft_spearman: x", x, (1,), "[n]")
  validation.check_shape("soft_spearman: y", y, jnp.shape(x), "[n] like x")
  validation.check_temperature("soft_spearman: temperature", temperature, allow_zero=True)
  valid = validation.mask_or_ones("soft_spearman: where", where, jnp.shape(x), "[n]")
  dtype = jnp.result_type(x, 1.0)
  exact = isinstance(temperature, (int, float)) and temperature == 0
  return _soft_spearman(jnp.asarray(x, dtype), jnp.asarray(y, dtype), valid,
                        0.0 if exact else temperature, exact=exact, standardize=standardize)


@functools.partial(jax.jit, static_argnames=("exact", "standardize"))
def _soft_spearman(x, y, valid, temperature, *, exact, standardize):
  # Exact ranks do not depend on the scale; skipping the division also keeps ties exact (XLA:CPU
  # may divide tied values in different vector lanes with different rounding).
  u = x / masked_std(x, valid) if standardize and not exact else x
  rx = exact_ranks(u, valid) if exact else smooth_ranks(u, 1.0 / temperature, valid)
  ry = exact_ranks(jax.lax.stop_gradient(y), valid)
  return _pearson(rx, ry, valid)


def order_loss(
    intensities: jax.Array,
    target: jax.Array,
    *,
    temperature: float,
    where: Optional[jax.Array] = None,
    standardize: bool = True,
) -> jax.Array:
  """Per-clip order calibration loss 1 - rho, rho = `soft_spearman(s_b, target_b)`.

  0 when the clip's intensities rise and fall in the target's order (any scale), 1 when they are
  unrelated to it, 2 when they follow it inverted. It constrains the order only: every
  increasing transform of s has the same loss, so pair it with a term that fixes location or
  scale (e.g. `wilcoxon_loss(penalty='z_hinge')`).

  Args:
    intensities: s, `[batch, T]`.
    target: the target curve per clip (e.g. the prototype mean), `[batch, T]` or `[T]`.
    temperature: smooth-rank temperature kappa (standard deviations when `standardize`).
    where: optional bool `[batch, T]`, True for valid frames.
    standardize: passed to `soft_spearman`.

  Returns:
    loss per clip, `[batch]`, in [0, 2].

  Example:
    >>> import jax.numpy as jnp
    >>> proto = jnp.array([0.1, 0.55, 1.0, 0.55, 0.1])
    >>> s = jnp.stack([0.5 + 0.01 * proto, 1. - proto])        # tiny but ordered; inverted
    >>> [round(v, 3) for v in order_loss(s, proto, temperature=0.).tolist()]
    [0.0, 2.0]
  """
  validation.check_rank("order_loss: intensities", intensities, (2,), "[batch, T]")
  shape = jnp.shape(intensities)
  validation.check_rank("order_loss: target", target, (1, 2), "[batch, T] or [T]")
  if jnp.shape(target)[-1] != shape[1] or (jnp.ndim(target) == 2 and jnp.shape(target) != shape):
    raise ValueError(f"order_loss: target must be [batch, T] = {shape} or [T], got "
                     f"{jnp.shape(target)}.")
  target = jnp.broadcast_to(target, shape)
  valid = validation.mask_or_ones("order_loss: where", where, shape, "[batch, T]")
  rho = jax.vmap(lambda s, y, w: soft_spearman(s, y, temperature=temperature, where=w,
                                               standardize=standardize))(
                                                   intensities, target, valid)
  return 1.0 - rho
