"""Tests for cmnet_jax.augment against PIL, colorsys, scipy and NumPy references."""
import colorsys
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage as ndi
from PIL import Image, ImageEnhance

from cmnet_jax import augment as A
from configs.common import augment_config


def key(seed):
  return jax.random.key(seed, impl="rbg")  # fast to compile on CPU; ops accept any key


def image_u8(shape=(12, 10, 3), seed=0):
  return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def config(**kw):
  c = augment_config()
  c.update(kw)
  return c


ZERO_PHOTO = dict(brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0, grayscale_p=0.0,
                  blur_kernel=1)
ZERO_GEOM = dict(crop_padding=0, flip=False, max_rotation_deg=0.0)


@functools.lru_cache(maxsize=None)
def jitted(fn_name, **frozen):
  """One compiled entry point per (function, config) pair, reused across tests."""
  fn = getattr(A, fn_name)
  cfg = config(**dict(frozen))
  return jax.jit(lambda rng, clips: fn(rng, clips, cfg))


def test_grayscale_is_itu601_luma():
  img = image_u8()
  want = img.astype(np.float64) @ np.array([0.299, 0.587, 0.114]) / 255
  np.testing.assert_allclose(A.luma(img), want, atol=1e-6)
  pil = np.asarray(Image.fromarray(img).convert("L"), np.float64)
  assert np.abs(np.asarray(A.luma(img)) * 255 - pil).max() <= 1
  gray = A.random_grayscale(key(0), img, p=1.0)
  np.testing.assert_allclose(gray, np.repeat(want[..., None], 3, -1), atol=1e-6)
  np.testing.assert_allclose(A.random_grayscale(key(0), img, p=0.0), img / 255, atol=1e-7)


@pytest.mark.parametrize("name,fn,enhancer", [
    ("brightness", A.adjust_brightness, ImageEnhance.Brightness),
    ("contrast", A.adjust_contrast, ImageEnhance.Contrast),
    ("saturation", A.adjust_saturation, ImageEnhance.Color),
])
@pytest.mark.parametrize("factor", [0.0, 0.6, 1.0, 1.45])
def test_enhance_matches_pil_within_one_grey_level(name, fn, enhancer, factor):
  img = image_u8(seed=1)
  ours = np.round(np.asarray(fn(img, factor), np.float64) * 255)
  want = np.asarray(enhancer(Image.fromarray(img)).enhance(factor), np.float64)
  assert np.abs(ours - want).max() <= 1, name


@pytest.mark.parametrize("shift", [-0.5, -0.23, 0.0, 0.1, 0.37])
def test_hue_matches_colorsys(shift):
  rgb = np.random.default_rng(2).random((40, 3))
  rgb[:4] = [[0.2, 0.2, 0.2], [1, 0, 0], [0, 0, 0], [0.5, 0.5, 0.1]]  # gray, pure, black, ties
  want = []
  for r, g, b in rgb:
    h, s, v = colorsys.rgb_to_hsv(r, g, b)
    want.append(colorsys.hsv_to_rgb((h + shift) % 1.0, s, v))
  ours = A.adjust_hue(rgb.reshape(5, 8, 3).astype(np.float32), shift).reshape(40, 3)
  np.testing.assert_allclose(ours, np.array(want), atol=2e-6)


def test_blur_kernel_and_blur_match_scipy():
  for size, sigma in [(3, 0.4), (5, 1.3), (7, 2.0)]:
    k = np.asarray(A.gaussian_kernel(sigma, kernel_size=size), np.float64)
    u = np.arange(size) - (size - 1) / 2
    want = np.exp(-u ** 2 / (2 * sigma ** 2))
    np.testing.assert_allclose(k, want / want.sum(), rtol=1e-6)
    np.testing.assert_allclose(k, k[::-1], atol=1e-7)
    assert abs(k.sum() - 1) < 1e-6
  img = image_u8(seed=3).astype(np.float64) / 255
  k = np.asarray(A.gaussian_kernel(1.3, kernel_size=5), np.float64)
  want = ndi.correlate1d(ndi.correlate1d(img, k, axis=0, mode="mirror"), k, axis=1, mode="mirror")
  np.testing.assert_allclose(A.blur(img.astype(np.float32), 1.3, kernel_size=5), want, atol=1e-6)
  with pytest.raises(ValueError, match="blur_kernel"):
    A.gaussian_kernel(1.0, kernel_size=4)


def test_crop_flip_rotate_match_numpy_and_scipy():
  img = image_u8(seed=4).astype(np.float32) / 255
  padded = np.pad(img, ((3, 3), (3, 3), (0, 0)))
  np.testing.assert_array_equal(A.crop(img, 5, 1, padding=3), padded[5:17, 1:11])
  np.testing.assert_array_equal(A.hflip(img), img[:, ::-1])
  np.testing.assert_allclose(A.rotate(img, 0.0), img, atol=1e-6)
  for deg in (-4.0, 9.0):
    want = np.stack([ndi.rotate(img[..., c].astype(np.float64), deg, reshape=False, order=1)
                     for c in range(3)], -1)
    # scipy's 'constant' mode treats the border differently; compare the interior.
    np.testing.assert_allclose(A.rotate(img, deg)[2:-2, 2:-2], want[2:-2, 2:-2], atol=1e-5)


def test_color_jitter_parameter_ranges():
  """torchvision meaning: factor ~ U[1 - b, 1 + b], hue shift ~ U[-h, h]."""
  gray = jnp.full((64, 1, 1, 3), 0.5)
  keys = jax.random.split(key(5), 64)
  bright = jax.jit(jax.vmap(lambda k, x: A.color_jitter(
      k, x, brightness=0.4, contrast=0.0, saturation=0.0, hue=0.0)))(keys, gray)
  f = np.asarray(bright[:, 0, 0, 0]) / 0.5
  assert 0.6 <= f.min() < 0.7 and 1.3 < f.max() <= 1.4
  red = jnp.broadcast_to(jnp.array([0.8, 0.2, 0.2]), (64, 1, 1, 3))
  hued = np.asarray(jax.jit(jax.vmap(lambda k, x: A.color_jitter(
      k, x, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.1)))(keys, red))
  shifts = [(colorsys.rgb_to_hsv(*p)[0] + 0.5) % 1 - 0.5 for p in hued[:, 0, 0]]
  assert -0.1 <= min(shifts) < -0.07 and 0.07 < max(shifts) <= 0.1


def test_zero_strength_is_identity_and_uint8_equals_float():
  clips = image_u8((2, 3, 12, 10, 3), seed=6)
  as_float = clips.astype(np.float32) / 255
  out = jitted("positive_views", **ZERO_PHOTO)(key(0), clips)
  np.testing.assert_allclose(out, as_float, atol=1e-7)
  out = jitted("clip_augment", **ZERO_GEOM)(key(0), clips)
  np.testing.assert_allclose(out, as_float, atol=1e-6)
  np.testing.assert_allclose(A.to_float(clips), as_float, atol=1e-7)
  np.testing.assert_allclose(A.adjust_contrast(clips, 1.3), A.adjust_contrast(as_float, 1.3),
                             atol=1e-6)


def test_same_rng_same_output_default_threefry_key():
  img = image_u8((8, 8, 3), seed=7)
  crop = jax.jit(lambda k: A.random_crop(k, img, padding=3))
  np.testing.assert_array_equal(crop(jax.random.key(0)), crop(jax.random.key(0)))
  assert not np.allclose(crop(jax.random.key(0)), crop(jax.random.key(1)))
  out = np.asarray(jitted("positive_views")(key(3), image_u8((2, 3, 12, 10, 3))))
  assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1
  np.testing.assert_array_equal(out, jitted("positive_views")(key(3), image_u8((2, 3, 12, 10, 3))))


def test_positive_views_independent_per_frame_and_content_blind():
  frame = image_u8((12, 10, 3), seed=8)
  clips = np.broadcast_to(frame, (2, 3, 12, 10, 3)).copy()
  views = jitted("positive_views")
  out = np.asarray(views(key(2), clips))
  # identical frames get different photometric draws at every position
  flat = out.reshape(6, -1)
  assert all(not np.allclose(flat[i], flat[j]) for i in range(6) for j in range(i))
  # the draw at a position depends on the rng and position only, not on the other frames
  other = image_u8((2, 3, 12, 10, 3), seed=9)
  other[1, 2] = frame
  np.testing.assert_allclose(views(key(2), other)[1, 2], out[1, 2], atol=1e-6)


def test_positive_views_with_onset_equals_two_calls():
  """One pass over (frame, onset) pairs = the two-call recipe with the same rng."""
  clips = image_u8((2, 4, 12, 10, 3), seed=11)
  cfg = config()
  views, refs = jax.jit(lambda k, x: A.positive_views_with_onset(k, x, cfg))(key(5), clips)
  onsets = np.broadcast_to(clips[:, :1], clips.shape)
  np.testing.assert_allclose(views, jitted("positive_views")(key(5), clips), atol=1e-6)
  np.testing.assert_allclose(refs, jitted("positive_views")(key(5), onsets), atol=1e-6)
  # each reference is its frame's draw applied to the onset: references differ across frames
  assert not np.allclose(refs[0, 1], refs[0, 2])


def test_clip_augment_same_geometry_for_all_frames():
  gen = np.random.default_rng(10)
  x, y = gen.random((2, 12, 10, 3), dtype=np.float32) * 0.5
  clips = np.stack([np.stack([x, 0.5 * x, y]), np.stack([x, 0.5 * x, y])])  # two equal clips
  out = np.asarray(jitted("clip_augment")(key(3), clips))
  # crop, flip and rotation are linear in the image: one geometry per clip keeps 0.5 x = 0.5 x
  np.testing.assert_allclose(out[:, 1], 0.5 * out[:, 0], atol=1e-6)
  assert not np.allclose(out[0], out[1])  # clips draw independently
  # crop only: the same (top, left) offset explains every frame of a clip
  crop_only = np.asarray(jitted("clip_augment", crop_padding=2, flip=False,
                                max_rotation_deg=0.0)(key(4), clips))
  padded = np.pad(clips, ((0, 0), (0, 0), (2, 2), (2, 2), (0, 0)))
  for b in range(2):
    offsets = {(i, j) for i in range(5) for j in range(5)
               if np.allclose(padded[b, :, i:i + 12, j:j + 10], crop_only[b], atol=1e-7)}
    assert len(offsets) == 1, offsets


def test_bad_input_is_rejected():
  with pytest.raises(ValueError, match=r"\[batch, time, height, width, 3\]"):
    A.positive_views(key(0), image_u8((3, 12, 10, 3)), augment_config())
  with pytest.raises(ValueError, match=r"\[\.\.\., height, width, 3\]"):
    A.luma(np.zeros((4, 4, 1), np.float32))
  with pytest.raises(KeyError, match="max_rotation_deg"):
    A.clip_augment(key(0), image_u8((1, 2, 8, 8, 3)), {"crop_padding": 1, "flip": True})
  with pytest.raises(ValueError, match="hue"):
    A.color_jitter(key(0), image_u8(), brightness=0.1, contrast=0.1, saturation=0.1, hue=0.7)
