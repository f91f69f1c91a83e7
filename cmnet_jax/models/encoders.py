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

CONV_IMPLS = ("auto", "xla", "im2col", "onednn")


def im2col_conv(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                dimension_numbers=None, feature_group_count=1, batch_group_count=1,
                precision=None, preferred_element_type=None):
  """`lax.conv_general_dilated` for NHWC inputs and HWIO kernels as shifted slices + one matmul.

  A drop-in `conv_general_dilated` for `flax.linen.Conv` (same parameters, same result up to
  float rounding). The patches `[n, oh, ow, kh * kw * c]` are gathered with strided slices (no
  convolution op at all) and contracted with the kernel reshaped to `[kh * kw * c, o]`. Its
  gradient is hand-written (`_im2col_bwd`): the kernel gradient is a batched matmul over blocks of
  frames instead of one contraction over every pixel of every frame.

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
  if not plain_conv(lhs, padding, lhs_dilation, rhs_dilation, dimension_numbers,
                    feature_group_count, batch_group_count):
    return jax.lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers, feature_group_count=feature_group_count,
        batch_group_count=batch_group_count, precision=precision,
        preferred_element_type=preferred_element_type)
  padding = tuple(tuple(int(p) for p in pair) for pair in padding)
  return _im2col(lhs, rhs, tuple(int(s) for s in window_strides), padding, precision,
                 preferred_element_type)


def plain_conv(lhs, padding, lhs_dilation, rhs_dilation, dimension_numbers, feature_group_count,
               batch_group_count) -> bool:
  """Whether a `conv_general_dilated` call is the plain kind the CPU paths handle: NHWC input,
  HWIO kernel, explicit padding, no dilation, no feature or batch groups."""
  return (feature_group_count == 1 and batch_group_count == 1 and not isinstance(padding, str)
          and all(d == 1 for d in (lhs_dilation or (1,))) and
          all(d == 1 for d in (rhs_dilation or (1,))) and lhs.ndim == 4 and
          _is_nhwc_hwio(dimension_numbers))


def _taps(x, kh: int, kw: int, strides, padding, pad_value=0):
  """The kh * kw shifted, strided views `[n, oh, ow, c]` of `[n, h, w, c]` padded with
  `pad_value` (`padding` = ((top, bottom), (left, right))), row-major over the window."""
  (sh, sw), (ph, pw) = strides, padding
  x = jnp.pad(x, ((0, 0), ph, pw, (0, 0)), constant_values=pad_value)
  oh, ow = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
  return [x[:, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw, :]
          for i in range(kh) for j in range(kw)]


def _patches(x, kh: int, kw: int, strides, padding):
  """`[n, h, w, c]` -> `[n, oh, ow, kh * kw * c]`: the windows, taps major, channels minor."""
  cols = _taps(x, kh, kw, strides, padding)
  return cols[0] if len(cols) == 1 else jnp.concatenate(cols, axis=-1)


def _frames_per_block(n: int, pixels: int, rows: int = 1024) -> int:
  """Frames per block of the weight gradient: enough output pixels (`rows`) per block for an
  efficient matmul, and a divisor of n."""
  g = min(n, max(1, -(-rows // pixels)))
  while n % g:
    g -= 1
  return g


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def _im2col(x, w, strides, padding, precision, preferred_element_type):
  kh, kw, c, o = w.shape
  return jax.lax.dot_general(_patches(x, kh, kw, strides, padding), w.reshape(kh * kw * c, o),
                             (((3,), (0,)), ((), ())), precision=precision,
                             preferred_element_type=preferred_element_type)


def _im2col_fwd(x, w, strides, padding, precision, preferred_element_type):
  kh, kw, c, o = w.shape
  patches = _patches(x, kh, kw, strides, padding)
  y = jax.lax.dot_general(patches, w.reshape(kh * kw * c, o), (((3,), (0,)), ((), ())),
                          precision=precision, preferred_element_type=preferred_element_type)
  return y, (patches, w, jnp.zeros((0,) + x.shape[1:], x.dtype))


def _im2col_bwd(strides, padding, precision, preferred_element_type, residuals, dy):
  """Kernel gradient block by block (frames), input gradient as autodiff of the gather gives.

  Autodiff of the forward contracts the patches `[m, k]` with dy `[m, o]` over the long
  m = frames x pixels axis, which XLA:CPU does by first transposing one of them in full (and
  fusing that transpose into the elementwise op producing dy, with strided writes). Here the
  contraction is a batched matmul over blocks of whole frames, `dy^T [o, pixels] @ patches
  [pixels, k]` per block (the transpose stays inside one block, in cache), then a sum over
  blocks. Measured (2-core CPU, small_cnn encoder gradient): about 15 % less time for one fold,
  1.4x less with 4 vmapped folds.
  """
  del preferred_element_type
  patches, w, x_like = residuals
  kh, kw, c, o = w.shape
  n, oh, ow, k = patches.shape
  g = _frames_per_block(n, oh * ow)
  rows = g * oh * ow
  dy_t = jnp.swapaxes(dy.reshape(n // g, rows, o), 1, 2)               # [blocks, o, rows]
  dw = jax.lax.dot_general(dy_t, patches.reshape(n // g, rows, k), (((2,), (1,)), ((0,), (0,))),
                           precision=precision, preferred_element_type=jnp.float32)
  dw = jnp.swapaxes(jnp.sum(dw, axis=0), 0, 1).reshape(w.shape).astype(w.dtype)
  dpatches = jax.lax.dot_general(dy, w.reshape(kh * kw * c, o), (((3,), (1,)), ((), ())),
                                 precision=precision).astype(patches.dtype)
  x_shape = (n,) + x_like.shape[1:]
  _, gather_vjp = jax.vjp(lambda x: _patches(x, kh, kw, strides, padding),
                          jnp.zeros(x_shape, x_like.dtype))
  return gather_vjp(dpatches)[0], dw


_im2col.defvjp(_im2col_fwd, _im2col_bwd)


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
  taps = _taps(x, window, window, (stride, stride), ((padding, padding),) * 2, -jnp.inf)
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


def _is_nhwc_hwio(dimension_numbers) -> bool:
  if dimension_numbers is None:
    return False
  if isinstance(dimension_numbers, jax.lax.ConvDimensionNumbers):
    return (tuple(dimension_numbers.lhs_spec) == (0, 3, 1, 2) and
            tuple(dimension_numbers.rhs_spec) == (3, 2, 0, 1) and
            tuple(dimension_numbers.out_spec) == (0, 3, 1, 2))
  return tuple(dimension_numbers) == ("NHWC", "HWIO", "NHWC")


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
