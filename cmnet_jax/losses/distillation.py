"""Intensity Distillation (ID): negative sampling inside a clip and the InfoNCE loss on ICE features."""
import functools
from typing import Optional

import jax
import jax.numpy as jnp

from cmnet_jax.losses import validation

STRATEGIES = ("all", "uniform", "difference")


def frame_differences(clips: jax.Array) -> jax.Array:
  """Mean absolute pixel difference between every pair of frames: `[B, T, H, W, C] -> [B, T, T]`.

  uint8 clips are compared in [0, 1] units (divided by 255).

  >>> import jax.numpy as jnp
  >>> clips = jnp.stack([jnp.zeros((2, 2, 3)), jnp.full((2, 2, 3), 0.5)])[None]
  >>> frame_differences(clips)[0].tolist()
  [[0.0, 0.5], [0.5, 0.0]]
  """
  clips = jnp.asarray(clips)
  if clips.dtype == jnp.uint8:
    clips = clips.astype(jnp.float32) / 255.0
  flat = clips.reshape(clips.shape[:2] + (-1,))
  return jnp.mean(jnp.abs(flat[:, :, None, :] - flat[:, None, :, :]), axis=-1)


def sample_negatives(
    rng: jax.Array,
    frame_differences: jax.Array,
    *,
    strategy: str = "all",
    num_negatives: int = 4,
    temperature: float = 1.0,
    normalize: bool = False,
) -> jax.Array:
  """Chooses, for every anchor frame, the frames of the same clip used as its negatives.

  Row i of the result is anchor i; entry (i, j) is True when frame j is a negative of i. The
  anchor itself is never chosen. With K = `num_negatives`:
  - 'all': every other frame (T - 1 negatives).
  - 'uniform': K distinct other frames, every K-subset equally likely.
  - 'difference': K distinct other frames drawn one after another without replacement, each
    draw with probability softmax(d_i / temperature) over the frames not yet drawn, where
    d_i = `frame_differences[..., i, :]` (e.g. the mean absolute pixel difference of each frame
    to the anchor). For K = 1 frame j is drawn with probability softmax(d_i / temperature)_j.
    With `normalize`, d is first divided by the mean of its clip's off-diagonal entries, so the
    temperature is relative to the clip's typical difference and the strategy behaves the same
    whatever the units (a mean absolute pixel difference of micro-expression frames is ~0.005:
    at temperature 1 un-normalised, the draw is uniform in practice).
  Draws use the Gumbel top-k trick (argtop-K of logits + Gumbel noise), so shapes are fixed and
  it runs under `jax.jit` / `jax.vmap`. When T - 1 <= K, every other frame is taken
  (the 'all' mask), whatever the strategy.

  Args:
    rng: a PRNG key (unused by 'all').
    frame_differences: `[..., T, T]`; only its shape is used by 'all' and 'uniform'.
    strategy: 'all', 'uniform' or 'difference'.
    num_negatives: K, a Python int >= 1.
    temperature: softmax temperature of 'difference' (> 0).
    normalize: scale-free 'difference' sampling (see above).

  Returns:
    bool mask `[..., T, T]`, K (or T - 1) True entries per row, False on the diagonal.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> d = jnp.zeros((2, 9, 9))
    >>> m = sample_negatives(jax.random.key(0), d, strategy='uniform', num_negatives=4)
    >>> m.shape, m.sum(-1).tolist()[0], bool(jnp.diagonal(m, axis1=-2, axis2=-1).any())
    ((2, 9, 9), [4, 4, 4, 4, 4, 4, 4, 4, 4], False)
  """
  validation.check_option("sample_negatives: strategy", strategy, STRATEGIES)
  shape = jnp.shape(frame_differences)
  if len(shape) < 2 or shape[-1] != shape[-2]:
    raise ValueError(
        f"sample_negatives: frame_differences must be [..., T, T] (anchor, frame), got {shape}.")
  if not isinstance(num_negatives, int) or num_negatives < 1:
    raise ValueError(
        f"sample_negatives: num_negatives must be an int >= 1, got {num_negatives!r}.")
  validation.check_temperature("sample_negatives: temperature", temperature, allow_zero=False)
  num_frames = shape[-1]
  diagonal = jnp.eye(num_frames, dtype=bool)
  if strategy == "all" or num_frames - 1 <= num_negatives:
    return jnp.broadcast_to(~diagonal, shape)
  return _draw_negatives(rng, frame_differences, temperature, strategy=strategy,
                         num_negatives=num_negatives, normalize=normalize)


def normalize_differences(frame_differences: jax.Array) -> jax.Array:
  """`[..., T, T]` differences divided by the mean of each clip's off-diagonal entries.

  A clip whose frames are all identical (mean 0) is left at 0.

  >>> import jax.numpy as jnp
  >>> d = jnp.array([[0., 0.002, 0.004], [0.002, 0., 0.006], [0.004, 0.006, 0.]])
  >>> [round(v, 3) for v in normalize_differences(d)[0].tolist()]
  [0.0, 0.5, 1.0]
  """
  d = jnp.asarray(frame_differences, jnp.float32)
  num_frames = d.shape[-1]
  off = ~jnp.eye(num_frames, dtype=bool)
  mean = jnp.sum(jnp.where(off, d, 0.0), axis=(-2, -1), keepdims=True) / max(
      num_frames * (num_frames - 1), 1)
  return jnp.where(mean > 0, d / jnp.where(mean > 0, mean, 1.0), 0.0)


@functools.partial(jax.jit, static_argnames=("strategy", "num_negatives", "normalize"))
def _draw_negatives(rng, frame_differences, temperature, *, strategy, num_negatives, normalize):
  """Gumbel top-K without replacement over the non-anchor frames of every row."""
  shape = frame_differences.shape
  num_frames = shape[-1]
  if strategy == "uniform":
    logits = jnp.zeros(shape, jnp.float32)
  else:
    d = normalize_differences(frame_differences) if normalize else frame_differences
    logits = jnp.asarray(d, jnp.float32) / temperature
  logits = jnp.where(jnp.eye(num_frames, dtype=bool), -jnp.inf, logits)
  scores = logits + jax.random.gumbel(rng, shape, jnp.float32)
  _, chosen = jax.lax.top_k(scores, num_negatives)          # [..., T, K]
  return jnp.any(chosen[..., None] == jnp.arange(num_frames), axis=-2)


def _normalize(v: jax.Array, epsilon: float) -> jax.Array:
  return v * jax.lax.rsqrt(jnp.maximum(jnp.sum(v * v, axis=-1, keepdims=True), epsilon ** 2))


def intensity_distillation_loss(
    anchors: jax.Array,
    positives: jax.Array,
    frames: jax.Array,
    negative_mask: jax.Array,
    *,
    temperature: float = 0.1,
    where: Optional[jax.Array] = None,
    epsilon: float = 1e-8,
) -> jax.Array:
  """Per-clip ID loss: InfoNCE of each frame against its augmented view and other frames.

  With z = v / max(||v||, epsilon) (cosine similarity), tau = `temperature`, for anchor n of a
  clip, its positive z_n+ and its negatives k in N(n) (`negative_mask[n, k]`, k valid, k != n):
    l_n = -log( exp(z_n . z_n+ / tau) / (exp(z_n . z_n+ / tau) + sum_{k in N(n)} exp(z_n . z_k / tau)) ),
  and the clip's loss is the mean of l_n over its valid anchors (0 if it has none). Negatives
  come from `frames` (usually the anchors' own embeddings). The diagonal of `negative_mask` is
  ignored and masked frames (`where` False) are neither anchors nor negatives.

  Args:
    anchors: z_n, `[batch, T, D]` (ICE projections of the frames).
    positives: z_n+, `[batch, T, D]` (of the augmented frames).
    frames: embeddings the negatives are taken from, `[batch, T, D]`.
    negative_mask: bool `[batch, T, T]` from `sample_negatives` (row = anchor).
    temperature: tau > 0.
    where: optional bool `[batch, T]`, True for valid frames.
    epsilon: norm floor of the cosine similarity.

  Returns:
    loss per clip, `[batch]`.

  Reference: A. van den Oord et al., "Representation learning with contrastive predictive
  coding", 2018 (InfoNCE); CMNet, AAAI 2023 (the ID loss).

  Example:
    >>> import jax.numpy as jnp
    >>> z = jnp.array([[[1., 0.], [0., 1.]]])        # two orthogonal frames
    >>> m = jnp.array([[[False, True], [True, False]]])
    >>> round(float(intensity_distillation_loss(z, z, z, m, temperature=1.)[0]), 4)  # log(1 + 1/e)
    0.3133
  """
  validation.check_rank("intensity_distillation_loss: anchors", anchors, (3,), "[batch, T, D]")
  batch, num_frames, _ = jnp.shape(anchors)
  for name, value in (("positives", positives), ("frames", frames)):
    validation.check_shape(
        f"intensity_distillation_loss: {name}", value, jnp.shape(anchors), "[batch, T, D]")
  validation.check_shape("intensity_distillation_loss: negative_mask", negative_mask,
                         (batch, num_frames, num_frames), "[batch, T, T]")
  validation.check_temperature(
      "intensity_distillation_loss: temperature", temperature, allow_zero=False)
  valid = validation.mask_or_ones(
      "intensity_distillation_loss: where", where, (batch, num_frames), "[batch, T]")
  return _info_nce(anchors, positives, frames, jnp.asarray(negative_mask, bool), valid,
                   temperature, epsilon)


@jax.jit
def _info_nce(anchors, positives, frames, negative_mask, valid, temperature, epsilon):
  """Numerics of `intensity_distillation_loss` after argument checks."""
  num_frames = anchors.shape[1]
  a, p, f = (_normalize(v, epsilon) for v in (anchors, positives, frames))
  positive = jnp.sum(a * p, axis=-1) / temperature                     # [batch, T]
  negative = jnp.einsum("btd,bsd->bts", a, f) / temperature            # [batch, T, T]
  use = (negative_mask & ~jnp.eye(num_frames, dtype=bool)
         & valid[:, None, :])
  logits = jnp.concatenate([positive[..., None], jnp.where(use, negative, -jnp.inf)], axis=-1)
  per_anchor = jax.nn.logsumexp(logits, axis=-1) - positive            # [batch, T]
  count = jnp.sum(valid, axis=-1)
  return jnp.sum(jnp.where(valid, per_anchor, 0.0), axis=-1) / jnp.maximum(count, 1)
