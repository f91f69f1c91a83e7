"""Smooth ranks and the Wilcoxon rank-sum test, differentiable and exact at temperature 0.

Reference: F. Wilcoxon, "Individual comparisons by ranking methods", Biometrics Bulletin 1945;
`scipy.stats.ranksums` (no tie correction, no continuity correction). The smooth rank
R_i = 1 + sum_{j != i} sigmoid((u_i - u_j) / kappa) is the form in docs/method.md.
"""
import functools
import math
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax.scipy.special import erfc
from jax.scipy.stats import rankdata

from cmnet_jax.losses import validation

# Half-width of the region around z = 0 where |z| is replaced by a smooth C1 polynomial
# (only when temperature > 0); it changes the p-value by at most 1e-4 (see `_smooth_abs`).
ABS_SMOOTHING = 1e-3


class RankSumResult(NamedTuple):
  """Result of `wilcoxon_rank_sum`; every field has the batch shape of the inputs (scalar)."""
  statistic: jax.Array  # W: rank sum of x in the pooled sample.
  zscore: jax.Array     # (W - E[W]) / sd[W] under the null hypothesis.
  pvalue: jax.Array     # two-sided p-value, erfc(|z| / sqrt(2)).


def _is_exact(temperature: Any) -> bool:
  return isinstance(temperature, (int, float)) and temperature == 0


def _compare(differences: jax.Array, inverse_temperature: Any, exact: bool) -> jax.Array:
  """Smooth step sigmoid(d / kappa); the exact step (0.5 at d = 0) when `exact`."""
  if exact:
    return 0.5 * (1.0 + jnp.sign(differences))
  return jax.nn.sigmoid(differences * inverse_temperature)


def exact_ranks(u: jax.Array, valid: Optional[jax.Array] = None) -> jax.Array:
  """Average ranks of u among its valid entries (`jax.scipy.stats.rankdata`, ties averaged),
  0 where invalid; NaN everywhere if a valid entry is NaN. Same dtype as u."""
  if valid is None:
    ranks = rankdata(u).astype(u.dtype)
    return jnp.where(jnp.any(jnp.isnan(u)), jnp.nan, ranks)
  # Invalid entries rank after every valid (finite) one, so they do not move its rank.
  ranks = rankdata(jnp.where(valid, u, jnp.inf)).astype(u.dtype)
  ranks = jnp.where(jnp.any(jnp.isnan(u) & valid), jnp.nan, ranks)
  return jnp.where(valid, ranks, 0.0)


def smooth_ranks(u: jax.Array, inverse_temperature: Any,
                 valid: Optional[jax.Array] = None) -> jax.Array:
  """R_i = 1/2 + sum_{j valid} sigmoid((u_i - u_j) / kappa) over the valid entries, 0 where
  invalid (`inverse_temperature` = 1 / kappa)."""
  step = _compare(u[:, None] - u[None, :], inverse_temperature, exact=False)
  if valid is None:
    return 0.5 + jnp.sum(step, axis=1)
  ranks = 0.5 + jnp.sum(jnp.where(valid[None, :], step, 0.0), axis=1)
  return jnp.where(valid, ranks, 0.0)


def masked_std(x: jax.Array, valid: jax.Array) -> jax.Array:
  """Population standard deviation of the valid entries of x (1 when they are all equal)."""
  weights = valid.astype(x.dtype)
  count = jnp.maximum(jnp.sum(weights), 1.0)
  mean = jnp.sum(weights * x) / count
  variance = jnp.sum(weights * (x - mean) ** 2) / count
  positive = variance > jnp.finfo(x.dtype).tiny
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, variance, 1.0)), 1.0)


def soft_rank(x: jax.Array, *, temperature: float) -> jax.Array:
  """Smooth ranks of a vector (1 = smallest); exact average ranks at `temperature=0`.

  R_i = 1 + sum_{j != i} sigmoid((x_i - x_j) / kappa), kappa = `temperature`. Since
  sigmoid(0) = 1/2, R_i = 1/2 + sum_j sigmoid((x_i - x_j) / kappa). At `temperature=0` (a Python
  number) the sigmoid is the step function with value 1/2 at equality, which gives exactly
  `scipy.stats.rankdata(x)` (ties get the average of their ranks), computed by sorting
  (`jax.scipy.stats.rankdata`, O(n log n)). `temperature` is in the units
  of `x`: scale it with the spread of `x` (or standardise `x`) for scale-free behaviour. The
  ranks always sum to n(n+1)/2. Memory and time are O(n^2); lift to batches with `jax.vmap`.

  Args:
    x: values, `[n]`.
    temperature: kappa >= 0.

  Returns:
    ranks, `[n]`, float.

  Example:
    >>> import jax.numpy as jnp
    >>> soft_rank(jnp.array([3., 1., 3., 2.]), temperature=0.).tolist()
    [3.5, 1.0, 3.5, 2.0]
    >>> [round(r, 3) for r in soft_rank(jnp.array([0., 10.]), temperature=1.).tolist()]
    [1.0, 2.0]
  """
  validation.check_rank("soft_rank: x", x, (1,), "[n]")
  validation.check_temperature("soft_rank: temperature", temperature, allow_zero=True)
  x = jnp.asarray(x, jnp.result_type(x, 1.0))
  exact = _is_exact(temperature)
  return _soft_rank(x, 0.0 if exact else temperature, exact=exact)


@functools.partial(jax.jit, static_argnames="exact")
def _soft_rank(x, temperature, *, exact):
  return exact_ranks(x) if exact else smooth_ranks(x, 1.0 / temperature)


def _exact_mann_whitney_u(x, y, wx, wy):
  """sum_{i,j} wx_i wy_j step(x_i - y_j) by sorting y: O((n1 + n2) log n2)."""
  y_sorted = jnp.sort(jnp.where(wy, y, jnp.inf))
  below = jnp.searchsorted(y_sorted, x, side="left")
  below_or_equal = jnp.searchsorted(y_sorted, x, side="right")
  counts = below + 0.5 * (below_or_equal - below).astype(x.dtype)
  return jnp.sum(jnp.where(wx, counts, 0.0))


def _smooth_mann_whitney_u(x, y, wx, wy, inverse_temperature, chunk_size):
  """sum_{i,j} wx_i wy_j sigmoid((x_i - y_j) / kappa); O(chunk_size * n2) memory if chunked."""
  wyf = wy.astype(x.dtype)

  def rows(xc, wxc):
    block = _compare(xc[:, None] - y[None, :], inverse_temperature, exact=False)
    return jnp.sum(jnp.where(wxc, block @ wyf, 0.0))

  if chunk_size is None or chunk_size >= x.shape[0]:
    return rows(x, wx)
  pad = -x.shape[0] % chunk_size
  xc = jnp.pad(x, (0, pad)).reshape(-1, chunk_size)
  wxc = jnp.pad(wx, (0, pad)).reshape(-1, chunk_size)
  # Rematerialise each block in the backward pass so no [n1, n2] residual is ever stored.
  partial = jax.lax.map(jax.checkpoint(lambda a: rows(*a)), (xc, wxc))
  return jnp.sum(partial)


def _pooled_std(x, y, wx, wy):
  """Population standard deviation of the valid pooled values (1 when they are all equal)."""
  return masked_std(jnp.concatenate([x, y]), jnp.concatenate([wx, wy]))


def _smooth_abs(z: jax.Array, delta: float) -> jax.Array:
  """|z| outside (-delta, delta); z^2/delta (2 - |z|/delta) inside: C1, 0 at 0, <= |z|.

  The largest change, 4 delta / 27 at |z| = delta / 3, moves the p-value by < 0.12 delta.
  """
  a = jnp.abs(z)
  return jnp.where(a < delta, z * z / delta * (2.0 - a / delta), a)


def wilcoxon_rank_sum(
    x: jax.Array,
    y: jax.Array,
    *,
    temperature: float,
    x_where: Optional[jax.Array] = None,
    y_where: Optional[jax.Array] = None,
    standardize: bool = True,
    chunk_size: Optional[int] = None,
) -> RankSumResult:
  """Smooth Wilcoxon rank-sum test of x against y; `scipy.stats.ranksums` at temperature 0.

  With n1, n2 the numbers of valid entries of x and y, the rank sum of x in the pooled sample
  is W = n1 (n1 + 1) / 2 + U, U = sum_{i, j} sigmoid((x_i - y_j) / kappa) (pairs inside x add
  exactly n1 (n1 - 1) / 2 because sigmoid(d) + sigmoid(-d) = 1), then
  z = (W - n1 (n1 + n2 + 1) / 2) / sqrt(n1 n2 (n1 + n2 + 1) / 12) and p = erfc(|z| / sqrt 2).
  No tie or continuity correction, as `scipy.stats.ranksums`; U - n1 (n1 + 1) / 2 is also
  `scipy.stats.mannwhitneyu`'s U statistic. With an empty side z = 0 and p = 1.

  Temperature and scale: with `standardize=True` (default) the differences are divided by the
  pooled standard deviation of the valid values, so kappa is measured in standard deviations and
  the result is the same for inputs of any magnitude (it is invariant to x, y -> a x + b, y + b
  for a > 0). With `standardize=False` kappa is in the units of the inputs: scale it with them.
  At `temperature=0` (a Python number) the comparison is the exact step (1/2 at ties) computed by
  sorting, and the result equals `scipy.stats.ranksums` (ties included) up to float rounding.
  As kappa -> 0 the smooth statistic converges to it. Valid inputs must be finite.

  Near z = 0, |z| is smoothed (`ABS_SMOOTHING`) when kappa > 0, so d p / d z is defined (0 there).
  In float32, erfc underflows to p = 0 (with a zero gradient, never NaN) for |z| > ~13.

  Args:
    x: the sample under test, `[n1]`.
    y: the reference sample, `[n2]`.
    temperature: kappa >= 0 (see above).
    x_where: optional bool mask `[n1]`; False entries are left out of the test.
    y_where: optional bool mask `[n2]`.
    standardize: divide differences by the pooled standard deviation (see above).
    chunk_size: if set, the O(n1 n2) pairwise sum runs over blocks of `chunk_size` rows of x,
      rematerialised in the backward pass, so memory is O(chunk_size n2) instead of O(n1 n2).

  Returns:
    `RankSumResult(statistic, zscore, pvalue)`, each a float scalar; `jax.vmap` for batches.

  Example:
    >>> import jax.numpy as jnp
    >>> r = wilcoxon_rank_sum(jnp.array([1., 2., 3.]), jnp.array([4., 5.]), temperature=0.)
    >>> float(r.statistic), round(float(r.zscore), 4), round(float(r.pvalue), 4)
    (6.0, -1.7321, 0.0833)
  """
  validation.check_rank("wilcoxon_rank_sum: x", x, (1,), "[n1]")
  validation.check_rank("wilcoxon_rank_sum: y", y, (1,), "[n2]")
  validation.check_temperature("wilcoxon_rank_sum: temperature", temperature, allow_zero=True)
  if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
    raise ValueError(f"wilcoxon_rank_sum: chunk_size must be a positive int, got {chunk_size!r}.")
  dtype = jnp.result_type(x, y, 1.0)
  x, y = jnp.asarray(x, dtype), jnp.asarray(y, dtype)
  wx = validation.mask_or_ones("wilcoxon_rank_sum: x_where", x_where, x.shape, "[n1]")
  wy = validation.mask_or_ones("wilcoxon_rank_sum: y_where", y_where, y.shape, "[n2]")
  exact = _is_exact(temperature)
  return _rank_sum(x, y, wx, wy, 0.0 if exact else temperature, exact=exact,
                   standardize=standardize, chunk_size=chunk_size)


@functools.partial(jax.jit, static_argnames=("exact", "standardize", "chunk_size"))
def _rank_sum(x, y, wx, wy, temperature, *, exact, standardize, chunk_size):
  """The numerics of `wilcoxon_rank_sum` after argument checks (jitted: one compile per shape)."""
  n1 = jnp.sum(wx).astype(x.dtype)
  n2 = jnp.sum(wy).astype(x.dtype)
  if exact:
    u = _exact_mann_whitney_u(x, y, wx, wy)
  else:
    scale = temperature * _pooled_std(x, y, wx, wy) if standardize else temperature
    u = _smooth_mann_whitney_u(x, y, wx, wy, 1.0 / scale, chunk_size)

  statistic = n1 * (n1 + 1.0) / 2.0 + u
  variance = n1 * n2 * (n1 + n2 + 1.0) / 12.0
  valid = variance > 0
  sd = jnp.sqrt(jnp.where(valid, variance, 1.0))
  zscore = jnp.where(valid, (statistic - n1 * (n1 + n2 + 1.0) / 2.0) / sd, 0.0)
  magnitude = jnp.abs(zscore) if exact else _smooth_abs(zscore, ABS_SMOOTHING)
  pvalue = erfc(magnitude / math.sqrt(2.0))
  return RankSumResult(statistic, zscore, pvalue)
