"""The uncertain intensity prototype: one Gaussian per frame position ("intensity vacancy")."""
import functools
from typing import Any, Sequence, Tuple

import jax
import jax.numpy as jnp


def intensity_prototype(
    num_frames: int,
    apex_index: Any,
    *,
    epsilon: float = 0.1,
    sigma_floor: float = 0.01,
) -> Tuple[jax.Array, jax.Array]:
  """Mean and standard deviation of the onset -> apex -> offset intensity prototype.

  With T = `num_frames` and a = `apex_index` (0 <= a < T):
    mu_t = epsilon + (1 - epsilon) t / a                    for t <= a (rising segment),
    mu_t = epsilon + (1 - epsilon) (T - 1 - t) / (T - 1 - a)  for t >= a (falling segment),
  so mu = 1 at the apex, epsilon at both ends (an end that is the apex has mu = 1), linear in
  t along each segment. By the 3-sigma rule,
    sigma_t = max(min(|mu_t - mu_{t-1}|, |mu_t - mu_{t+1}|) / 6, sigma_floor),
  so neighbouring vacancies' [mu - 3 sigma, mu + 3 sigma] ranges touch at most, never overlap,
  unless the floor is larger than a gap / 6 (then the floor wins; for T = 1, sigma = floor).
  `apex_index` may be traced: `jax.jit` / `jax.vmap` over a batch of apex positions work.
  Out-of-range apex indices are clipped to [0, T - 1].

  Args:
    num_frames: T, a Python int >= 1.
    apex_index: a, an int scalar (Python or traced).
    epsilon: mean intensity at onset and offset.
    sigma_floor: smallest standard deviation.

  Returns:
    `(mean, std)`, each `[T]` float32.

  Example:
    >>> mean, std = intensity_prototype(5, 2, epsilon=0.1)
    >>> [round(m, 3) for m in mean.tolist()], [round(s, 3) for s in std.tolist()]
    ([0.1, 0.55, 1.0, 0.55, 0.1], [0.075, 0.075, 0.075, 0.075, 0.075])
  """
  if not isinstance(num_frames, int) or num_frames < 1:
    raise ValueError(f"intensity_prototype: num_frames must be an int >= 1, got {num_frames!r}.")
  if jnp.ndim(apex_index) != 0:
    raise ValueError(
        f"intensity_prototype: apex_index must be a scalar, got shape {jnp.shape(apex_index)}; "
        "use jax.vmap for a batch of apex positions.")
  return _prototype(num_frames, jnp.asarray(apex_index), epsilon, sigma_floor)


@functools.partial(jax.jit, static_argnums=0)
def _prototype(num_frames, apex_index, epsilon, sigma_floor):
  """Numerics of `intensity_prototype` after argument checks."""
  t = jnp.arange(num_frames, dtype=jnp.float32)
  last = float(num_frames - 1)
  apex = jnp.clip(apex_index, 0, num_frames - 1).astype(jnp.float32)
  rising = jnp.where(apex > 0, t / jnp.maximum(apex, 1.0), 1.0)   # apex 0: t = 0 is the apex
  falling = (last - t) / jnp.maximum(last - apex, 1.0)
  fraction = jnp.where(t <= apex, rising, falling)
  mean = epsilon + (1.0 - epsilon) * fraction
  if num_frames == 1:
    return mean, jnp.full_like(mean, 1.0) * sigma_floor
  gaps = jnp.abs(jnp.diff(mean))                      # [T - 1], gap between t and t + 1
  left = jnp.concatenate([jnp.array([jnp.inf]), gaps])
  right = jnp.concatenate([gaps, jnp.array([jnp.inf])])
  std = jnp.maximum(jnp.minimum(left, right) / 6.0, sigma_floor)
  return mean, std


def sample_prototype(
    rng: jax.Array, mean: jax.Array, std: jax.Array, shape: Sequence[int]) -> jax.Array:
  """Draws prototype values v ~ N(mean, std^2), independently per entry.

  Args:
    rng: a PRNG key.
    mean: prototype means, `[T]` or `[batch, T]` or anything broadcastable to `shape`.
    std: prototype standard deviations, same rules as `mean`.
    shape: the full output shape, e.g. `[batch, T]` (one draw per vacancy) or
      `[batch, R, T]` (R draws per vacancy; pass `mean[:, None, :]` when mean is `[batch, T]`).

  Returns:
    samples of shape `shape`, float32.

  Example:
    >>> import jax
    >>> mean, std = intensity_prototype(9, 4)
    >>> sample_prototype(jax.random.key(0), mean, std, (2, 3, 9)).shape
    (2, 3, 9)
  """
  shape = tuple(shape)
  for name, value in (("mean", mean), ("std", std)):
    try:
      if jnp.broadcast_shapes(jnp.shape(value), shape) != shape:
        raise ValueError
    except ValueError:
      raise ValueError(
          f"sample_prototype: {name} of shape {jnp.shape(value)} does not broadcast to the "
          f"requested output shape {shape}.") from None
  noise = jax.random.normal(rng, shape, dtype=jnp.float32)
  return jnp.asarray(mean, jnp.float32) + jnp.asarray(std, jnp.float32) * noise
