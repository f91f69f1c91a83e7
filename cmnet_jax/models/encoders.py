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

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

CONV_IMPLS = ("auto", "xla", "im2col")


def im2col_conv(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                dimension_numbers=None, feature_group_count=1, batch_group_count=1,
                precision=None, preferred_element_type=None):
  """`lax.conv_general_dilated` for NHWC inputs and HWIO kernels as shifted slices + one matmul.

  A drop-in `conv_general_dilated` for `flax.linen.Conv` (same parameters, same result up to
  float rounding). The patches `[n, oh, ow, kh * kw * c]` are gathered with strided slices (no
  convolution op at all) and contracted with the kernel reshaped to `[kh * kw * c, o]`.

  Why: on XLA:CPU (jaxlib 0.10.2) a convolution's gradients, and above all a convolution whose
  kernel is vmapped over folds (XLA makes it a grouped convolution), take slow generic paths.
  Measured on 2 cores (`python -m benchmarks.training`, docs/benchmarks.md) for the gradient of a
  3x3, 16 -> 32 channel layer on 36 frames of 32x32: 2.1x faster than XLA's convolution for one
  fold, 7.2x for 8 vmapped folds. Under `vmap` the contraction
  here becomes a batched matmul, which XLA:CPU runs well. Dilations and feature groups other than
  1 fall back to `lax.conv_general_dilated`.

  >>> import numpy as np
  >>> x = np.random.default_rng(0).normal(size=(2, 7, 7, 3)).astype(np.float32)
  >>> w = np.random.default_rng(1).normal(size=(3, 3, 3, 4)).astype(np.float32)
  >>> dn = ("NHWC", "HWIO", "NHWC")
  >>> ref = jax.lax.conv_general_dilated(x, w, (2, 2), ((1, 1), (1, 1)), dimension_numbers=dn)
  >>> got = im2col_conv(x, w, (2, 2), ((1, 1), (1, 1)), dimension_numbers=dn)
  >>> bool(np.allclose(ref, got, atol=1e-4)), got.shape
  (True, (2, 4, 4, 4))
  """
  simple = (feature_group_count == 1 and batch_group_count == 1 and not isinstance(padding, str)
            and all(d == 1 for d in (lhs_dilation or (1,))) and
            all(d == 1 for d in (rhs_dilation or (1,))) and lhs.ndim == 4 and
            _is_nhwc_hwio(dimension_numbers))
  if not simple:
    return jax.lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers, feature_group_count=feature_group_count,
        batch_group_count=batch_group_count, precision=precision,
        preferred_element_type=preferred_element_type)
  kh, kw, c, o = rhs.shape
  (sh, sw), (ph, pw) = window_strides, padding
  x = jnp.pad(lhs, ((0, 0), tuple(ph), tuple(pw), (0, 0)))
  oh, ow = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
  cols = [x[:, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw, :]
          for i in range(kh) for j in range(kw)]
  patches = cols[0] if len(cols) == 1 else jnp.concatenate(cols, axis=-1)
  return jax.lax.dot_general(patches, rhs.reshape(kh * kw * c, o), (((3,), (0,)), ((), ())),
                             precision=precision, preferred_element_type=preferred_element_type)


def _is_nhwc_hwio(dimension_numbers) -> bool:
  if dimension_numbers is None:
    return False
  if isinstance(dimension_numbers, jax.lax.ConvDimensionNumbers):
    return (tuple(dimension_numbers.lhs_spec) == (0, 3, 1, 2) and
            tuple(dimension_numbers.rhs_spec) == (3, 2, 0, 1) and
            tuple(dimension_numbers.out_spec) == (0, 3, 1, 2))
  return tuple(dimension_numbers) == ("NHWC", "HWIO", "NHWC")


def conv_fn(conv_impl: str):
  """The `conv_general_dilated` for `conv_impl`: 'im2col', 'xla', or 'auto' (im2col on CPU)."""
  if conv_impl not in CONV_IMPLS:
    raise ValueError(f"model.conv_impl: expected one of {CONV_IMPLS}, got {conv_impl!r}")
  if conv_impl == "auto":
    conv_impl = "im2col" if jax.default_backend() == "cpu" else "xla"
  return im2col_conv if conv_impl == "im2col" else jax.lax.conv_general_dilated


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
      x = nn.GroupNorm(num_groups=self.norm_groups, dtype=self.dtype, name=f"norm{i}")(x)
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
    norm = lambda name: nn.GroupNorm(  # noqa: E731
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
    x = nn.relu(nn.GroupNorm(num_groups=self.norm_groups, dtype=self.dtype, name="norm1")(x))
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    for stage, (w, n) in enumerate(zip(self.widths, RESNET18_BLOCKS)):
      for b in range(n):
        stride = 2 if (stage > 0 and b == 0) else 1
        x = BasicBlock(w, stride, self.norm_groups, self.dtype, self.conv_impl,
                       name=f"layer{stage + 1}_{b}")(x)
    return _Head(self.feature_dim, self.dtype, self.pool_grid, name="head")(x)


ENCODERS = {"small_cnn": SmallCNN, "resnet18": ResNet18}
