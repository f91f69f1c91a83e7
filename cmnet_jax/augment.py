"""On-device augmentations, pure JAX (jit/vmap-able): photometric positive views for the ID loss
and clip-level geometric training augmentation.

Conventions: rng first, arrays positional, hyper-parameters keyword-only (Python numbers).
Images are `[..., height, width, 3]`, uint8 or float in [0, 1]; outputs are float32 in [0, 1].
A random op draws ONE set of parameters from its rng and applies it to every image in the
leading dims; per-frame or per-clip independence comes from the entry points, which split the rng
and vmap:

- `positive_views(rng, clips, cfg)`: ColorJitter -> RandomGrayscale -> GaussianBlur, drawn
  independently for every frame. Parameters depend only on rng and the (clip, frame) position,
  never on pixel values, so two calls with the same rng transform matching positions alike.
- `clip_augment(rng, clips, cfg)`: random crop with zero padding -> horizontal flip -> small
  rotation, one draw per clip shared by all its frames (frame differences stay aligned).

Parameter meanings follow torchvision: brightness/contrast/saturation b draw a factor uniformly in
[max(0, 1 - b), 1 + b], hue h a shift in [-h, h] (h <= 0.5), the four applied in random order;
grayscale is ITU-R 601 luma; blur sigma is uniform in [lo, hi] with reflect padding.

>>> import jax, jax.numpy as jnp
>>> clips = jnp.full((2, 3, 16, 16, 3), 128, jnp.uint8)
>>> cfg = SPEC.defaults()  # the `augment` block's defaults
>>> views = jax.eval_shape(lambda k, x: positive_views(k, x, cfg), jax.random.key(0), clips)
>>> views.shape, views.dtype  # drop eval_shape to compute the views
((2, 3, 16, 16, 3), dtype('float32'))
>>> x = jnp.array([[[0.2, 0.4, 0.6]]])
>>> [round(float(v), 3) for v in adjust_saturation(x, 0.0)[0, 0]]  # fully desaturated: luma
[0.363, 0.363, 0.363]
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from cmnet_jax import config_blocks as cb

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601


def to_float(images: jax.Array) -> jax.Array:
  """uint8 -> float32 / 255; float -> float32 (assumed in [0, 1]); checks `[..., h, w, 3]`."""
  images = jnp.asarray(images)
  if images.ndim < 3 or images.shape[-1] != 3:
    raise ValueError(f"images: expected [..., height, width, 3], got shape {images.shape}")
  if images.dtype == jnp.uint8:
    return images.astype(jnp.float32) / 255.0
  if not jnp.issubdtype(images.dtype, jnp.floating):
    raise TypeError(f"images: expected uint8 or float in [0, 1], got dtype {images.dtype}")
  return images.astype(jnp.float32)


# ---------------------------------------------------------------- deterministic kernels


def luma(images: jax.Array) -> jax.Array:
  """ITU-R 601 luma Y = 0.299 R + 0.587 G + 0.114 B: `[..., h, w, 3]` -> `[..., h, w]`."""
  return to_float(images) @ jnp.asarray(LUMA, jnp.float32)


def adjust_brightness(images: jax.Array, factor: float) -> jax.Array:
  """clip(factor * x, 0, 1) (blend with black)."""
  return jnp.clip(to_float(images) * factor, 0.0, 1.0)


def adjust_contrast(images: jax.Array, factor: float) -> jax.Array:
  """clip(factor * x + (1 - factor) * mean(Y)), mean luma over each image's height and width."""
  x = to_float(images)
  mean = jnp.mean(luma(x), axis=(-2, -1), keepdims=True)[..., None]
  return jnp.clip(factor * x + (1.0 - factor) * mean, 0.0, 1.0)


def adjust_saturation(images: jax.Array, factor: float) -> jax.Array:
  """clip(factor * x + (1 - factor) * Y) (blend with the grayscale image)."""
  x = to_float(images)
  return jnp.clip(factor * x + (1.0 - factor) * luma(x)[..., None], 0.0, 1.0)


def _rgb_to_hsv(x: jax.Array) -> jax.Array:
  r, g, b = x[..., 0], x[..., 1], x[..., 2]
  maxc, minc = jnp.max(x, axis=-1), jnp.min(x, axis=-1)
  delta = maxc - minc
  safe = jnp.where(delta > 0, delta, 1.0)
  s = jnp.where(maxc > 0, delta / jnp.where(maxc > 0, maxc, 1.0), 0.0)
  rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
  h = jnp.where(maxc == r, bc - gc, jnp.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
  h = jnp.where(delta > 0, jnp.mod(h / 6.0, 1.0), 0.0)
  return jnp.stack([h, s, maxc], axis=-1)


def _hsv_to_rgb(x: jax.Array) -> jax.Array:
  # Closed form: channel n in (5, 3, 1) = v - v s clip(min(k, 4 - k), 0, 1), k = (n + 6 h) mod 6.
  h, s, v = x[..., :1], x[..., 1:2], x[..., 2:]
  k = jnp.mod(jnp.asarray([5.0, 3.0, 1.0]) + 6.0 * h, 6.0)
  return v - v * s * jnp.clip(jnp.minimum(k, 4.0 - k), 0.0, 1.0)


def adjust_hue(images: jax.Array, shift: float) -> jax.Array:
  """Rotates hue in HSV space: H' = (H + shift) mod 1 (shift in [-0.5, 0.5])."""
  hsv = _rgb_to_hsv(to_float(images))
  hsv = hsv.at[..., 0].set(jnp.mod(hsv[..., 0] + shift, 1.0))
  return jnp.clip(_hsv_to_rgb(hsv), 0.0, 1.0)


def gaussian_kernel(sigma: float, *, kernel_size: int) -> jax.Array:
  """`[kernel_size]` weights exp(-u^2 / (2 sigma^2)) / sum, u = -(k-1)/2 .. (k-1)/2.

  >>> [round(float(w), 4) for w in gaussian_kernel(1.0, kernel_size=3)]
  [0.2741, 0.4519, 0.2741]
  """
  if kernel_size < 1 or kernel_size % 2 == 0:
    raise ValueError(f"blur_kernel: expected an odd size >= 1, got {kernel_size}")
  u = jnp.arange(kernel_size, dtype=jnp.float32) - (kernel_size - 1) / 2
  w = jnp.exp(-0.5 * jnp.square(u / sigma))
  return w / jnp.sum(w)


def blur(images: jax.Array, sigma: float, *, kernel_size: int) -> jax.Array:
  """Separable Gaussian blur with reflect padding (torchvision's GaussianBlur)."""
  x = to_float(images)
  w, r = gaussian_kernel(sigma, kernel_size=kernel_size), kernel_size // 2
  h, wd = x.shape[-3], x.shape[-2]
  lead = [(0, 0)] * (x.ndim - 3)
  x = jnp.pad(x, lead + [(r, r), (0, 0), (0, 0)], mode="reflect")
  x = sum(w[i] * x[..., i:i + h, :, :] for i in range(kernel_size))
  x = jnp.pad(x, lead + [(0, 0), (r, r), (0, 0)], mode="reflect")
  return sum(w[i] * x[..., :, i:i + wd, :] for i in range(kernel_size))


def crop(images: jax.Array, top: jax.Array, left: jax.Array, *, padding: int) -> jax.Array:
  """Zero-pads `padding` pixels on every side, then takes the original-size window at
  (top, left) of the padded image; top, left in [0, 2 * padding]."""
  x = to_float(images)
  lead = [(0, 0)] * (x.ndim - 3)
  x = jnp.pad(x, lead + [(padding, padding), (padding, padding), (0, 0)])
  start = (0,) * (x.ndim - 3) + (top, left, 0)
  return jax.lax.dynamic_slice(x, start, images.shape)


def hflip(images: jax.Array) -> jax.Array:
  """Mirrors the width axis."""
  return to_float(images)[..., ::-1, :]


def rotate(images: jax.Array, degrees: jax.Array) -> jax.Array:
  """Rotates about the image centre ((h-1)/2, (w-1)/2) by `degrees` (counter-clockwise as
  displayed, like scipy.ndimage.rotate and torchvision), bilinear, zeros outside the image.

  Output pixel (y, x) (row, col) samples the input at
  y_s = c_y + cos a (y - c_y) + sin a (x - c_x), x_s = c_x - sin a (y - c_y) + cos a (x - c_x).
  """
  x = to_float(images)
  h, w = x.shape[-3], x.shape[-2]
  a = jnp.deg2rad(jnp.asarray(degrees, jnp.float32))
  yy, xx = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32) - (h - 1) / 2,
                        jnp.arange(w, dtype=jnp.float32) - (w - 1) / 2, indexing="ij")
  ys = (h - 1) / 2 + jnp.cos(a) * yy + jnp.sin(a) * xx
  xs = (w - 1) / 2 - jnp.sin(a) * yy + jnp.cos(a) * xx
  y0, x0 = jnp.floor(ys), jnp.floor(xs)
  out = 0.0
  for dy in (0, 1):
    for dx in (0, 1):
      yi, xi = y0 + dy, x0 + dx
      weight = (1 - jnp.abs(ys - yi)) * (1 - jnp.abs(xs - xi))
      valid = (yi >= 0) & (yi <= h - 1) & (xi >= 0) & (xi <= w - 1)
      yc = jnp.clip(yi, 0, h - 1).astype(jnp.int32)
      xc = jnp.clip(xi, 0, w - 1).astype(jnp.int32)
      out = out + jnp.where(valid, weight, 0.0)[..., None] * x[..., yc, xc, :]
  return jnp.clip(out, 0.0, 1.0)


# ---------------------------------------------------------------- random ops (one draw each)


def _factor(u: jax.Array, strength: float, name: str) -> jax.Array:
  """u ~ U[0, 1) -> a factor ~ U[max(0, 1 - strength), 1 + strength]."""
  if strength < 0:
    raise ValueError(f"{name}: expected >= 0, got {strength}")
  lo, hi = max(0.0, 1.0 - strength), 1.0 + strength
  return lo + (hi - lo) * u


def color_jitter(rng: jax.Array, images: jax.Array, *, brightness: float, contrast: float,
                 saturation: float, hue: float) -> jax.Array:
  """torchvision ColorJitter: the four adjustments in a random order; a 0 strength skips one.

  Brightness, contrast and saturation are blends clip(f x + (1 - f) m) with m = 0, the mean
  luma, or the luma; they are applied step by step in the drawn order, and the (costlier) hue
  rotation once, at its drawn position.
  """
  if not 0.0 <= hue <= 0.5:
    raise ValueError(f"hue: expected in [0, 0.5], got {hue}")
  x = to_float(images)
  if not (brightness or contrast or saturation or hue):
    return x
  u = jax.random.uniform(rng, (8,))  # one draw: 3 factors, the hue shift, the order
  factors = jnp.stack([_factor(u[0], brightness, "brightness"),
                       _factor(u[1], contrast, "contrast"),
                       _factor(u[2], saturation, "saturation")])
  order = jnp.argsort(u[4:])  # a uniform permutation: 0 brightness, 1 contrast, 2 saturation, 3 hue
  hue_at = jnp.argmax(order == 3)

  def blends(y, first, stop):
    for step in range(4):
      op = order[step]
      y_luma = luma(y)[..., None]
      m = jnp.where(op == 0, 0.0, jnp.where(
          op == 1, jnp.mean(y_luma, axis=(-3, -2), keepdims=True), y_luma))
      f = factors[jnp.minimum(op, 2)]
      use = (step >= first) & (step < stop) & (op != 3)
      y = jnp.where(use, jnp.clip(f * y + (1.0 - f) * m, 0.0, 1.0), y)
    return y

  x = blends(x, 0, hue_at)
  if hue:
    x = adjust_hue(x, hue * (2.0 * u[3] - 1.0))
  return blends(x, hue_at + 1, 4)


def random_grayscale(rng: jax.Array, images: jax.Array, *, p: float) -> jax.Array:
  """With probability p, every channel becomes the ITU-R 601 luma."""
  x = to_float(images)
  return jnp.where(jax.random.bernoulli(rng, p), jnp.repeat(luma(x)[..., None], 3, axis=-1), x)


def gaussian_blur(rng: jax.Array, images: jax.Array, *, kernel_size: int,
                  sigma: tuple[float, float]) -> jax.Array:
  """Blur with sigma ~ U[sigma[0], sigma[1]] (kernel_size 1 = identity)."""
  lo, hi = sigma
  if not 0 < lo <= hi:
    raise ValueError(f"blur_sigma: expected 0 < lo <= hi, got {sigma}")
  return blur(images, jax.random.uniform(rng, (), minval=lo, maxval=hi), kernel_size=kernel_size)


def random_crop(rng: jax.Array, images: jax.Array, *, padding: int) -> jax.Array:
  """Zero-pad by `padding`, crop the original size at a uniform offset in [0, 2 padding]^2."""
  if padding < 0:
    raise ValueError(f"crop_padding: expected >= 0, got {padding}")
  top, left = jax.random.randint(rng, (2,), 0, 2 * padding + 1)
  return crop(images, top, left, padding=padding)


def random_flip(rng: jax.Array, images: jax.Array, *, p: float) -> jax.Array:
  """Horizontal flip with probability p."""
  x = to_float(images)
  return jnp.where(jax.random.bernoulli(rng, p), x[..., ::-1, :], x)


def random_rotation(rng: jax.Array, images: jax.Array, *, max_degrees: float) -> jax.Array:
  """Rotation by an angle ~ U[-max_degrees, max_degrees] (0 = identity)."""
  if max_degrees < 0:
    raise ValueError(f"max_rotation_deg: expected >= 0, got {max_degrees}")
  if max_degrees == 0:
    return to_float(images)
  return rotate(images, jax.random.uniform(rng, (), minval=-max_degrees, maxval=max_degrees))


# ---------------------------------------------------------------- entry points (config block)


# The `augment` block, declared once (configs/common.py augment_config builds it from these
# defaults): the keys of each entry point. Positive views for the ID loss (per frame), then
# clip-level training augmentation.
POSITIVE_VIEWS_SPEC = cb.Spec({
    "brightness": cb.Field(cb.FLOAT, cb.non_negative, "ColorJitter", default=0.4),
    "contrast": cb.Field(cb.FLOAT, cb.non_negative, "ColorJitter", default=0.4),
    "saturation": cb.Field(cb.FLOAT, cb.non_negative, "ColorJitter", default=0.4),
    "hue": cb.Field(cb.FLOAT, cb.in_range(0, 0.5), "ColorJitter", default=0.1),
    "grayscale_p": cb.Field(cb.FLOAT, cb.in_range(0, 1), "a probability", default=0.2),
    "blur_kernel": cb.Field(cb.INT, cb.Check(lambda k: k >= 1 and k % 2 == 1, "odd and >= 1"),
                            "GaussianBlur kernel size", default=5),
    "blur_sigma": cb.Field(cb.FLOAT_PAIR,
                           cb.Check(lambda s: 0 < s[0] <= s[1], "with 0 < lo <= hi"),
                           "GaussianBlur sigma range", default=(0.1, 2.0)),
})
CLIP_AUGMENT_SPEC = cb.Spec({
    "crop_padding": cb.Field(cb.INT, cb.non_negative, "pixels", default=4),
    "flip": cb.Field(cb.BOOL, doc="random horizontal flip", default=True),
    "max_rotation_deg": cb.Field(cb.FLOAT, cb.non_negative, default=5.0),
})
SPEC = POSITIVE_VIEWS_SPEC | CLIP_AUGMENT_SPEC


def _check_clips(clips: jax.Array) -> jax.Array:
  if jnp.ndim(clips) != 5:
    raise ValueError(f"clips: expected [batch, time, height, width, 3], got shape "
                     f"{jnp.shape(clips)}")
  return to_float(clips)


def positive_views(rng: jax.Array, clips: jax.Array, augment_config: Any) -> jax.Array:
  """ID-loss positives: `[batch, time, h, w, 3]` -> same shape, float32; per-frame draws of
  ColorJitter(brightness, contrast, saturation, hue), RandomGrayscale(grayscale_p),
  GaussianBlur(blur_kernel, blur_sigma).

  With `model.input_mode` 'onset_difference' or 'both', give the intensity branch a matched
  onset reference, so the difference it sees is not just two unrelated colour draws:
  `refs = positive_views(rng, jnp.broadcast_to(clips[:, :1], clips.shape), cfg)` (same rng, so
  every view and its reference share one draw), then
  `model.apply(v, views, reference=refs, method='intensity_branch')`.
  `positive_views_with_onset` computes both in one pass.
  """
  c = cb.read_block(augment_config, POSITIVE_VIEWS_SPEC, "augment")
  x = _check_clips(clips)
  b, t = x.shape[:2]

  def one(key, frame):
    k1, k2, k3 = jax.random.split(key, 3)
    frame = color_jitter(k1, frame, brightness=c["brightness"], contrast=c["contrast"],
                         saturation=c["saturation"], hue=c["hue"])
    frame = random_grayscale(k2, frame, p=c["grayscale_p"])
    return gaussian_blur(k3, frame, kernel_size=c["blur_kernel"], sigma=tuple(c["blur_sigma"]))

  keys = jax.random.split(rng, (b, t))
  return jax.vmap(jax.vmap(one))(keys, x)


def positive_views_with_onset(rng: jax.Array, clips: jax.Array, augment_config: Any
                              ) -> tuple[jax.Array, jax.Array]:
  """`(views, references)`: the positive views of the frames and, with each frame's draw, a
  view of its clip's onset (first) frame, in one pass.

  Equal (up to float rounding) to the two calls of the recipe in `positive_views`:
  `positive_views(rng, clips, cfg)` and
  `positive_views(rng, jnp.broadcast_to(clips[:, :1], clips.shape), cfg)`. Here every draw is
  made once and applied to the frame and its onset together (the ops treat leading axes as
  images sharing one draw), instead of drawing everything twice in two programs.
  """
  c = cb.read_block(augment_config, POSITIVE_VIEWS_SPEC, "augment")
  x = _check_clips(clips)
  b, t = x.shape[:2]

  def one(key, frame, onset):
    k1, k2, k3 = jax.random.split(key, 3)
    pair = jnp.stack([frame, onset])
    pair = color_jitter(k1, pair, brightness=c["brightness"], contrast=c["contrast"],
                        saturation=c["saturation"], hue=c["hue"])
    pair = random_grayscale(k2, pair, p=c["grayscale_p"])
    pair = gaussian_blur(k3, pair, kernel_size=c["blur_kernel"], sigma=tuple(c["blur_sigma"]))
    return pair[0], pair[1]

  keys = jax.random.split(rng, (b, t))
  onsets = jnp.broadcast_to(x[:, :1], x.shape)
  return jax.vmap(jax.vmap(one))(keys, x, onsets)


def clip_augment(rng: jax.Array, clips: jax.Array, augment_config: Any) -> jax.Array:
  """Training augmentation `[batch, time, h, w, 3]` -> same shape, float32: random crop with
  `crop_padding`, horizontal flip (p = 0.5 if `flip`), rotation up to `max_rotation_deg`; one
  draw per clip, applied identically to all its frames."""
  c = cb.read_block(augment_config, CLIP_AUGMENT_SPEC, "augment")
  x = _check_clips(clips)

  def one(key, clip):
    k1, k2, k3 = jax.random.split(key, 3)
    clip = random_crop(k1, clip, padding=int(c["crop_padding"]))
    clip = random_flip(k2, clip, p=0.5 if c["flip"] else 0.0)
    return random_rotation(k3, clip, max_degrees=float(c["max_rotation_deg"]))

  return jax.vmap(one)(jax.random.split(rng, x.shape[0]), x)


__all__ = ["adjust_brightness", "adjust_contrast", "adjust_hue", "adjust_saturation", "blur",
           "clip_augment", "color_jitter", "crop", "gaussian_blur", "gaussian_kernel", "hflip",
           "luma", "positive_views", "positive_views_with_onset", "random_crop", "random_flip",
           "random_grayscale", "random_rotation", "rotate"]
