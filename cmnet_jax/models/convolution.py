"""Convolutions as XLA:CPU runs them fast: `im2col_conv` (shifted slices + one matmul, with its
own gradient) and the helpers the CPU paths share (`plain_conv`, `taps`).

`encoders.conv_fn` picks the implementation for `model.conv_impl`; `onednn.conv` falls back to
`im2col_conv` for what oneDNN does not take. Nothing here imports either of them.
"""
from __future__ import annotations

import functools

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


def taps(x, kh: int, kw: int, strides, padding, pad_value=0):
  """The kh * kw shifted, strided views `[n, oh, ow, c]` of `[n, h, w, c]` padded with
  `pad_value` (`padding` = ((top, bottom), (left, right))), row-major over the window."""
  (sh, sw), (ph, pw) = strides, padding
  x = jnp.pad(x, ((0, 0), ph, pw, (0, 0)), constant_values=pad_value)
  oh, ow = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
  return [x[:, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw, :]
          for i in range(kh) for j in range(kw)]


def _patches(x, kh: int, kw: int, strides, padding):
  """`[n, h, w, c]` -> `[n, oh, ow, kh * kw * c]`: the windows, taps major, channels minor."""
  cols = taps(x, kh, kw, strides, padding)
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


def _is_nhwc_hwio(dimension_numbers) -> bool:
  if dimension_numbers is None:
    return False
  if isinstance(dimension_numbers, jax.lax.ConvDimensionNumbers):
    return (tuple(dimension_numbers.lhs_spec) == (0, 3, 1, 2) and
            tuple(dimension_numbers.rhs_spec) == (3, 2, 0, 1) and
            tuple(dimension_numbers.out_spec) == (0, 3, 1, 2))
  return tuple(dimension_numbers) == ("NHWC", "HWIO", "NHWC")
