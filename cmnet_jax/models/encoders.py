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

# torchvision's ResNet-18: two BasicBlocks per stage, stride 1 for the first stage, 2 after.
RESNET18_BLOCKS = (2, 2, 2, 2)


def _check_groups(widths: Sequence[int], norm_groups: int, where: str) -> None:
  for w in widths:
    if w % norm_groups:
      raise ValueError(f"{where}: every width must be divisible by norm_groups={norm_groups}; "
                       f"got widths={tuple(widths)}")


class _Head(nn.Module):
  """Global average pool `[n, h, w, c] -> [n, c]`, then Dense to `feature_dim` if c differs."""
  feature_dim: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = jnp.mean(x, axis=(1, 2))
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
  """
  widths: Sequence[int]
  feature_dim: int
  norm_groups: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """`[frames, height, width, channels]` -> `[frames, feature_dim]`."""
    _check_groups(self.widths, self.norm_groups, "SmallCNN")
    for i, w in enumerate(self.widths):
      stride = 1 if i == 0 else 2
      x = nn.Conv(w, (3, 3), strides=(stride, stride), padding=((1, 1), (1, 1)), use_bias=False,
                  dtype=self.dtype, name=f"conv{i}")(x)
      x = nn.GroupNorm(num_groups=self.norm_groups, dtype=self.dtype, name=f"norm{i}")(x)
      x = nn.relu(x)
    return _Head(self.feature_dim, self.dtype, name="head")(x)


class BasicBlock(nn.Module):
  """torchvision's ResNet BasicBlock with GroupNorm: two 3x3 convs, identity or 1x1 shortcut."""
  width: int
  stride: int
  norm_groups: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    s = (self.stride, self.stride)
    conv = lambda k, st, pad, name: nn.Conv(  # noqa: E731
        self.width, (k, k), strides=st, padding=pad, use_bias=False, dtype=self.dtype, name=name)
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
  """
  widths: Sequence[int]
  feature_dim: int
  norm_groups: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """`[frames, height, width, channels]` -> `[frames, feature_dim]`."""
    if len(self.widths) != len(RESNET18_BLOCKS):
      raise ValueError(f"ResNet18: widths must have {len(RESNET18_BLOCKS)} entries, "
                       f"got {tuple(self.widths)}")
    _check_groups(self.widths, self.norm_groups, "ResNet18")
    x = nn.Conv(self.widths[0], (7, 7), strides=(2, 2), padding=((3, 3), (3, 3)), use_bias=False,
                dtype=self.dtype, name="conv1")(x)
    x = nn.relu(nn.GroupNorm(num_groups=self.norm_groups, dtype=self.dtype, name="norm1")(x))
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    for stage, (w, n) in enumerate(zip(self.widths, RESNET18_BLOCKS)):
      for b in range(n):
        stride = 2 if (stage > 0 and b == 0) else 1
        x = BasicBlock(w, stride, self.norm_groups, self.dtype, name=f"layer{stage + 1}_{b}")(x)
    return _Head(self.feature_dim, self.dtype, name="head")(x)


ENCODERS = {"small_cnn": SmallCNN, "resnet18": ResNet18}
