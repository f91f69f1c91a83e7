"""Per-frame image encoders (ICE and FFE share these families): `SmallCNN` and `ResNet18`.

Both map a batch of frames `[frames, height, width, channels]` to `[frames, feature_dim]`: stages
of convolution + GroupNorm + ReLU, global average pooling, then a Dense projection to
`feature_dim` only when it differs from the last stage width (so the paper-scale ResNet-18 keeps
its pooled 512-d feature, as torchvision's `fc` is dropped). GroupNorm behaves the same in
training and evaluation and holds no statistics, so folds never share state.

The caller folds time into the batch (`[batch * time, ...]`): one convolution call encodes every
frame of every clip.

>>> import jax, jax.numpy as jnp
>>> enc = SmallCNN(widths=(4, 8), feature_dim=6, norm_groups=2)
>>> x = jnp.zeros((5, 16, 16, 3))
>>> variables = jax.eval_shape(enc.init, jax.random.key(0), x)  # shapes only, no compute
>>> variables['params']['conv0']['kernel'].shape, jax.eval_shape(enc.apply, variables, x).shape
((3, 3, 3, 4), (5, 6))
"""
from __future__ import annotations

import functools
import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from cmnet_jax.models.convolution import CONV_IMPLS, im2col_conv
from cmnet_jax.models.convolution import taps as tap_slices


def max_pool(x: jax.Array, window: int, stride: int, padding: int) -> jax.Array:
  """`nn.max_pool` over square windows (padding with -inf), with a cheaper gradient on CPU.

  Same values as `nn.max_pool(x, (window, window), (stride, stride), ((padding, padding),) * 2)`
  (it is that call) and the same gradient rule: each window's output gradient goes to the
  window's first maximum in row-major order, as XLA's select-and-scatter routes it. The
  gradient is written differently: the forward pass records, per output, which tap held the
  maximum (an int8), and the backward pass places the output gradient back with plain pads,
  one plane of the padded grid per (row, column) residue modulo the stride, then interleaves
  the planes.

  Why: XLA:CPU (jaxlib 0.10.2) expands `nn.max_pool`'s select-and-scatter gradient into a
  variadic reduce-window over the input and four int32 index arrays of the padded input's size.
  ResNet-18's stem (72 frames at 112x112, 2-core CPU): the pool's forward + backward alone took
  300-335 ms that way and 87-88 ms this way; the whole encoder's forward + backward about 5 %
  less (`python -m benchmarks.max_pool`, docs/benchmarks.md). On GPU/TPU this is `nn.max_pool`
  itself (their select-and-scatter is native; not measured against this form).

  >>> import numpy as np, flax.linen as nn
  >>> x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 9, 9, 3)), jnp.float32)
  >>> ref = lambda x: nn.max_pool(x, (3, 3), (2, 2), ((1, 1), (1, 1)))
  >>> bool(jnp.array_equal(max_pool(x, 3, 2, 1), ref(x)))
  True
  >>> g = jnp.ones((2, 5, 5, 3))
  >>> ours, = jax.vjp(lambda x: max_pool(x, 3, 2, 1), x)[1](g)
  >>> theirs, = jax.vjp(ref, x)[1](g)
  >>> bool(jnp.allclose(ours, theirs))
  True
  """
  if jax.default_backend() != "cpu":
    return nn.max_pool(x, (window, window), (stride, stride), ((padding, padding),) * 2)
  return _max_pool(x, window, stride, padding)


def _max_pool_fwd(x, window, stride, padding):
  out = nn.max_pool(x, (window, window), (stride, stride), ((padding, padding),) * 2)
  # Which tap holds each window's first maximum: compare every tap with the (materialised)
  # maximum, the last tap first so that the earliest match is the one kept.
  taps = tap_slices(x, window, window, (stride, stride), ((padding, padding),) * 2, -jnp.inf)
  index = jnp.int8 if window * window <= 127 else jnp.int32
  first = jnp.zeros(out.shape, index)
  for t in reversed(range(window * window)):
    first = jnp.where(taps[t] == out, index(t), first)
  return out, (first, jnp.zeros((0,) + x.shape[1:], x.dtype))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _max_pool(x, window, stride, padding):
  return nn.max_pool(x, (window, window), (stride, stride), ((padding, padding),) * 2)


def _max_pool_bwd(window, stride, padding, residuals, dy):
  first, x_like = residuals
  h, w = x_like.shape[1:3]
  n, oh, ow, c = dy.shape
  # Tap (i, j) sends dy[a, b] to padded position (i + stride * a, j + stride * b). Written as
  # stride x stride planes of the padded grid (row i % stride, column j % stride), in each of
  # which the tap's gradient is only shifted by (i // stride, j // stride): plain pads, no
  # interior padding (which XLA:CPU evaluates element by element with divisions), then one
  # interleave of the planes.
  hq = -(-(h + 2 * padding) // stride)
  wq = -(-(w + 2 * padding) // stride)
  zero = jnp.zeros((), dy.dtype)
  planes = [[None] * stride for _ in range(stride)]
  for t in range(window * window):
    (qi, ri), (qj, rj) = divmod(t // window, stride), divmod(t % window, stride)
    routed = jnp.where(first == t, dy, zero)
    placed = jnp.pad(routed, ((0, 0), (qi, hq - oh - qi), (qj, wq - ow - qj), (0, 0)))
    planes[ri][rj] = placed if planes[ri][rj] is None else planes[ri][rj] + placed
  planes = [[p if p is not None else jnp.zeros((n, hq, wq, c), dy.dtype) for p in row]
            for row in planes]
  grid = jnp.stack([jnp.stack(row, axis=3) for row in planes], axis=2)  # [n, hq, s, wq, s, c]
  dx = grid.reshape(n, hq * stride, wq * stride, c)
  return (dx[:, padding:padding + h, padding:padding + w, :],)


_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


def conv_fn(conv_impl: str):
  """The `conv_general_dilated` for `conv_impl`: 'im2col', 'xla', 'onednn' (CPU, opt-in:
  `onednn.conv`) or 'auto' (im2col on CPU)."""
  if conv_impl not in CONV_IMPLS:
    raise ValueError(f"model.conv_impl: expected one of {CONV_IMPLS}, got {conv_impl!r}")
  if conv_impl == "auto":
    conv_impl = "im2col" if jax.default_backend() == "cpu" else "xla"
  if conv_impl == "onednn":
    from cmnet_jax.models import onednn  # pylint: disable=g-import-not-at-top
    return onednn.conv
  return im2col_conv if conv_impl == "im2col" else jax.lax.conv_general_dilated


class GroupNorm(nn.Module):
  """`flax.linen.GroupNorm` (same parameters `scale` and `bias`, same formula), computed from
  per-channel sums.

  y = (x - mean_g) * rsqrt(var_g + epsilon) * scale + bias, with mean_g and
  var_g = E[x^2] - mean_g^2 (clipped at 0) over the height, width and channels of each group
  of each frame, in float32 (Flax's default "fast variance"). Only the summation order differs
  from Flax's, so results agree up to float rounding (tested against `nn.GroupNorm`).

  Why: Flax reshapes `[n, h, w, c]` to `[n, h, w, groups, c / groups]` and reduces over
  `(h, w, c / groups)`; XLA:CPU lowers that to a strided reduction that, per encoder forward
  pass, took about as long as the convolutions. Here the spatial sums keep the channel axis
  (the contiguous, fast reduction), the groups are summed on the tiny `[n, c]` result, and the
  normalisation is one elementwise pass that XLA fuses with the ReLU that follows.
  """
  num_groups: int
  epsilon: float = 1e-6
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    n, c = x.shape[0], x.shape[-1]
    g = self.num_groups
    if c % g:
      raise ValueError(f"GroupNorm: {c} channels are not divisible by num_groups={g}")
    scale = self.param("scale", nn.initializers.ones, (c,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
    x32 = x.astype(jnp.float32)
    axes = tuple(range(1, x.ndim - 1))
    count = math.prod(x.shape[1:-1]) * (c // g)

    def group_mean(per_channel):  # [n, c] sums -> [n, groups] means
      return jnp.sum(per_channel.reshape(n, g, c // g), axis=-1) / count

    mean = group_mean(jnp.sum(x32, axis=axes))
    var = jnp.maximum(0.0, group_mean(jnp.sum(jnp.square(x32), axis=axes)) - jnp.square(mean))
    shape = (n,) + (1,) * (x.ndim - 2) + (c,)
    mean_c = jnp.repeat(mean, c // g, axis=-1).reshape(shape)
    mul = (jnp.repeat(jax.lax.rsqrt(var + self.epsilon), c // g, axis=-1) * scale).reshape(shape)
    return ((x32 - mean_c) * mul + bias).astype(self.dtype or x.dtype)


# torchvision's ResNet-18: two BasicBlocks per stage, stride 1 for the first stage, 2 after.
RESNET18_BLOCKS = (2, 2, 2, 2)


def _check_groups(widths: Sequence[int], norm_groups: int, where: str) -> None:
  for w in widths:
    if w % norm_groups:
      raise ValueError(f"{where}: every width must be divisible by norm_groups={norm_groups}; "
                       f"got widths={tuple(widths)}")


class _Head(nn.Module):
  """Average pool `[n, h, w, c]` to a `pool_grid x pool_grid` grid (1 = global average pool),
  flatten to `[n, grid * grid * c]`, then Dense to `feature_dim` if that size differs.

  A grid keeps *where* on the face a feature fired: micro-expression classes are defined by
  which facial region moves (brows, eyes, nose, lip corners, chin), and a global average over a
  shallow network's feature map discards that.
  """
  feature_dim: int
  dtype: Any = jnp.float32
  pool_grid: int = 1

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.pool_grid <= 1:
      x = jnp.mean(x, axis=(1, 2))
    else:
      gh, gw = min(self.pool_grid, x.shape[1]), min(self.pool_grid, x.shape[2])
      wh, ww = x.shape[1] // gh, x.shape[2] // gw
      x = nn.avg_pool(x[:, :gh * wh, :gw * ww], (wh, ww), strides=(wh, ww))
      x = x.reshape((x.shape[0], -1))
    if x.shape[-1] != self.feature_dim:
      x = nn.Dense(self.feature_dim, dtype=self.dtype, name="proj")(x)
    return x


class SmallCNN(nn.Module):
  """A CPU-sized encoder: one 3x3 conv + GroupNorm + ReLU per width, stride 2 after the first.

  Attributes:
    widths: channels per stage, e.g. (16, 32, 64); spatial size halves at every stage but the
      first (the first keeps full resolution: micro-expressions move one or two pixels).
    feature_dim: output size.
    norm_groups: GroupNorm groups; must divide every width.
    dtype: compute dtype of convolutions and Dense layers (params stay float32).
    conv_impl: 'auto' | 'xla' | 'im2col' (see `im2col_conv`); same parameters either way.
    pool_grid: the head pools to a pool_grid x pool_grid grid before its Dense (1 = global).
  """
  widths: Sequence[int]
  feature_dim: int
  norm_groups: int
  dtype: Any = jnp.float32
  conv_impl: str = "auto"
  pool_grid: int = 1

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """`[frames, height, width, channels]` -> `[frames, feature_dim]`."""
    _check_groups(self.widths, self.norm_groups, "SmallCNN")
    for i, w in enumerate(self.widths):
      stride = 1 if i == 0 else 2
      x = nn.Conv(w, (3, 3), strides=(stride, stride), padding=((1, 1), (1, 1)), use_bias=False,
                  dtype=self.dtype, conv_general_dilated=conv_fn(self.conv_impl),
                  name=f"conv{i}")(x)
      x = GroupNorm(num_groups=self.norm_groups, dtype=self.dtype, name=f"norm{i}")(x)
      x = nn.relu(x)
    return _Head(self.feature_dim, self.dtype, self.pool_grid, name="head")(x)


class BasicBlock(nn.Module):
  """torchvision's ResNet BasicBlock with GroupNorm: two 3x3 convs, identity or 1x1 shortcut."""
  width: int
  stride: int
  norm_groups: int
  dtype: Any = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    s = (self.stride, self.stride)
    conv = lambda k, st, pad, name: nn.Conv(  # noqa: E731
        self.width, (k, k), strides=st, padding=pad, use_bias=False, dtype=self.dtype,
        conv_general_dilated=conv_fn(self.conv_impl), name=name)
    norm = lambda name: GroupNorm(  # noqa: E731
        num_groups=self.norm_groups, dtype=self.dtype, name=name)
    y = nn.relu(norm("norm1")(conv(3, s, ((1, 1), (1, 1)), "conv1")(x)))
    y = norm("norm2")(conv(3, (1, 1), ((1, 1), (1, 1)), "conv2")(y))
    if self.stride != 1 or x.shape[-1] != self.width:
      x = norm("downsample_norm")(conv(1, s, ((0, 0), (0, 0)), "downsample_conv")(x))
    return nn.relu(x + y)


class ResNet18(nn.Module):
  """ResNet-18 in torchvision's layout (7x7/2 stem, 3x3/2 max-pool, 4 stages of 2 BasicBlocks).

  Parameter names mirror torchvision's so `load_resnet18_npz` can map them one to one:
  `conv1`/`norm1` (torchvision `conv1`/`bn1`), `layer{s}_{b}` (torchvision `layer{s}.{b}`).

  Attributes:
    widths: 4 stage widths, (64, 128, 256, 512) for the torchvision layout.
    feature_dim: output size (a Dense projection is added when != widths[-1]).
    norm_groups: GroupNorm groups; must divide every width.
    dtype: compute dtype.
    conv_impl: 'auto' | 'xla' | 'im2col' (see `im2col_conv`).
    pool_grid: head pooling grid (1 = torchvision's global average pool).
  """
  widths: Sequence[int]
  feature_dim: int
  norm_groups: int
  dtype: Any = jnp.float32
  conv_impl: str = "auto"
  pool_grid: int = 1

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """`[frames, height, width, channels]` -> `[frames, feature_dim]`."""
    if len(self.widths) != len(RESNET18_BLOCKS):
      raise ValueError(f"ResNet18: widths must have {len(RESNET18_BLOCKS)} entries, "
                       f"got {tuple(self.widths)}")
    _check_groups(self.widths, self.norm_groups, "ResNet18")
    x = nn.Conv(self.widths[0], (7, 7), strides=(2, 2), padding=((3, 3), (3, 3)), use_bias=False,
                dtype=self.dtype, conv_general_dilated=conv_fn(self.conv_impl), name="conv1")(x)
    x = nn.relu(GroupNorm(num_groups=self.norm_groups, dtype=self.dtype, name="norm1")(x))
    x = max_pool(x, 3, 2, 1)
    for stage, (w, n) in enumerate(zip(self.widths, RESNET18_BLOCKS)):
      for b in range(n):
        stride = 2 if (stage > 0 and b == 0) else 1
        x = BasicBlock(w, stride, self.norm_groups, self.dtype, self.conv_impl,
                       name=f"layer{stage + 1}_{b}")(x)
    return _Head(self.feature_dim, self.dtype, self.pool_grid, name="head")(x)


ENCODERS = {"small_cnn": SmallCNN, "resnet18": ResNet18}
