"""model.conv_impl='onednn': oneDNN convolutions as XLA custom calls (cmnet_jax/models/onednn.py).

Run where oneDNN is installed (requirements-cpu.txt, which CI installs) and a C++ compiler exists;
elsewhere the numerical tests are skipped with the reason `onednn.unavailable()` gives, and the
error path is still tested.
"""
import hashlib
import os
import stat

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cmnet_jax import config_blocks as cb
from cmnet_jax.models import build, encoders, onednn
from configs.common import model_config

WHY = onednn.unavailable()
needs_onednn = pytest.mark.skipif(WHY is not None, reason=f"oneDNN unavailable: {WHY}")
DN = ("NHWC", "HWIO", "NHWC")


@needs_onednn
@pytest.mark.parametrize("k,stride,pad,c,o,hw", [
    (3, 1, ((1, 1), (1, 1)), 3, 4, (9, 11)), (3, 2, ((1, 1), (1, 1)), 5, 6, (9, 11)),
    (7, 2, ((3, 3), (3, 3)), 3, 4, (12, 10)), (1, 2, ((0, 0), (0, 0)), 4, 8, (9, 11)),
    (3, 1, ((0, 0), (0, 0)), 2, 3, (9, 11)), (3, 2, ((0, 1), (1, 0)), 3, 4, (8, 8))])
def test_conv_and_both_gradients_match_xla(k, stride, pad, c, o, hw):
  """Outputs and both gradients equal lax.conv_general_dilated's, and the custom calls are what
  runs (not the im2col fallback)."""
  x = np.random.default_rng(0).normal(size=(2,) + hw + (c,)).astype(np.float32)
  w = np.random.default_rng(1).normal(size=(k, k, c, o)).astype(np.float32)
  args = ((stride, stride), pad)
  ref = lambda x, w: jax.lax.conv_general_dilated(x, w, *args, dimension_numbers=DN)  # noqa: E731
  got = lambda x, w: onednn.conv(x, w, *args, dimension_numbers=DN)  # noqa: E731
  np.testing.assert_allclose(jax.jit(got)(x, w), ref(x, w), rtol=1e-5, atol=1e-4)
  cot = np.random.default_rng(2).normal(size=ref(x, w).shape).astype(np.float32)
  loss = lambda f: lambda x, w: jnp.sum(f(x, w) * cot)  # noqa: E731
  grads = jax.jit(jax.grad(loss(got), (0, 1)))
  for g, r in zip(grads(x, w), jax.grad(loss(ref), (0, 1))(x, w)):
    np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-4)
  assert onednn.TARGETS["forward"] in jax.jit(got).lower(x, w).as_text()
  hlo = grads.lower(x, w).as_text()  # the gradient of a linear loss needs no forward pass
  assert onednn.TARGETS["backward_data"] in hlo and onednn.TARGETS["backward_weights"] in hlo


@needs_onednn
def test_vmapped_over_per_fold_kernels_and_inputs():
  """Folds side by side (vmap over kernels and inputs), as the fold-parallel step calls it."""
  x = np.random.default_rng(0).normal(size=(3, 2, 8, 8, 3)).astype(np.float32)
  w = np.random.default_rng(1).normal(size=(3, 3, 3, 3, 4)).astype(np.float32)
  args = ((2, 2), ((1, 1), (1, 1)))

  def grads(conv):
    return jax.jit(jax.vmap(jax.grad(
        lambda x, w: jnp.sum(conv(x, w, *args, dimension_numbers=DN) ** 2), (0, 1))))
  for g, r in zip(grads(onednn.conv)(x, w), grads(jax.lax.conv_general_dilated)(x, w)):
    np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-4)


@needs_onednn
@pytest.mark.parametrize("encoder", ["small_cnn", "resnet18"])
def test_encoders_agree_with_im2col(encoder):
  """Same parameters, same outputs and parameter gradients as the im2col encoders."""
  widths = (4, 8) if encoder == "small_cnn" else (4, 4, 8, 8)
  make = lambda impl: encoders.ENCODERS[encoder](widths, 6, 2, jnp.float32, impl)  # noqa: E731
  x = np.random.default_rng(0).normal(size=(2, 20, 18, 3)).astype(np.float32)
  v = jax.jit(make("im2col").init)(jax.random.key(0, impl="rbg"), x)
  outs = {}
  for impl in ("im2col", "onednn"):
    enc = make(impl)
    outs[impl] = jax.jit(jax.value_and_grad(lambda v: jnp.sum(enc.apply(v, x) ** 2)))(v)
  np.testing.assert_allclose(outs["onednn"][0], outs["im2col"][0], rtol=1e-4)
  for a, b in zip(jax.tree.leaves(outs["onednn"][1]), jax.tree.leaves(outs["im2col"][1])):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


@needs_onednn
@pytest.mark.parametrize("num_devices,folds_per_device", [(4, 1), (2, 2)])
def test_fold_parallel_devices_and_folds(num_devices, folds_per_device):
  """Devices running their folds' custom calls at once (pmap), several folds per device (vmap):
  each fold gets what a plain call gives it."""
  from cmnet_jax import parallel
  assert jax.local_device_count() >= num_devices  # conftest exposes 4 host devices
  args = ((2, 2), ((1, 1), (1, 1)))

  def fold_grad(w, x):
    return jax.grad(lambda w: jnp.sum(jnp.tanh(
        onednn.conv(x, w, *args, dimension_numbers=DN)) ** 2))(w)
  slots = num_devices * folds_per_device
  w = np.random.default_rng(1).normal(size=(slots, 3, 3, 3, 4)).astype(np.float32)
  x = np.random.default_rng(0).normal(size=(slots, 2, 12, 12, 3)).astype(np.float32)
  layout = parallel.FoldLayout(num_folds=slots, devices=tuple(jax.local_devices()[:num_devices]),
                               folds_per_device=folds_per_device)
  fn = parallel.fold_parallel(fold_grad, layout, fold_args=(0, 1))
  got = parallel.unshard(fn(parallel.shard_folds(layout, w), parallel.shard_folds(layout, x)))
  for k in range(slots):
    ref = jax.grad(lambda w: jnp.sum(jnp.tanh(jax.lax.conv_general_dilated(
        x[k], w, *args, dimension_numbers=DN)) ** 2))(w[k])
    np.testing.assert_allclose(got[k], ref, rtol=1e-4, atol=1e-4)


@needs_onednn
def test_falls_back_to_im2col_for_bfloat16_and_dilation():
  x = np.random.default_rng(0).normal(size=(2, 9, 9, 3)).astype(np.float32)
  w = np.random.default_rng(1).normal(size=(3, 3, 3, 4)).astype(np.float32)
  pad = ((1, 1), (1, 1))
  for kwargs, xx, ww in [({}, x.astype(jnp.bfloat16), w.astype(jnp.bfloat16)),
                         ({"rhs_dilation": (2, 2)}, x, w)]:
    f = lambda a, b: onednn.conv(a, b, (1, 1), pad, dimension_numbers=DN, **kwargs)  # noqa: E731
    hlo = jax.jit(f).lower(xx, ww).as_text()
    assert not any(t in hlo for t in onednn.TARGETS.values())
    ref = jax.lax.conv_general_dilated(xx, ww, (1, 1), pad, dimension_numbers=DN, **kwargs)
    np.testing.assert_allclose(np.asarray(f(xx, ww), np.float32), np.asarray(ref, np.float32),
                               rtol=5e-2, atol=5e-2)


def test_missing_pieces_are_named_before_any_work(monkeypatch, tmp_path):
  """Without oneDNN (or a compiler) the config check names the key and says what to install."""
  monkeypatch.setattr(onednn, "_prefixes", lambda: [tmp_path])  # no headers, no library here
  onednn._register.cache_clear()
  try:
    with pytest.raises(onednn.OnednnUnavailable, match="requirements-cpu.txt"):
      onednn._find()
    assert "oneDNN's headers" in onednn.unavailable()
    c = model_config("small")
    c.conv_impl = "onednn"
    with pytest.raises(cb.ConfigError, match="model.conv_impl"):
      build(c, num_classes=3)
  finally:
    onednn._register.cache_clear()


@pytest.fixture
def fake_build(monkeypatch, tmp_path):
  """`_build` with a stand-in compiler (writes b'library <n>' and counts its calls) into a
  cache under tmp_path: (cache folder, number of compilations so far)."""
  cxx, count = tmp_path / "cxx", tmp_path / "compiled"
  cxx.write_text('#!/bin/sh\nwhile [ $# -gt 0 ]; do [ "$1" = -o ] && out=$2; shift; done\n'
                 f'echo x >> {count}\nprintf "library %s" $(wc -l < {count}) > "$out"\n')
  cxx.chmod(0o755)
  monkeypatch.setattr(onednn, "_find", lambda: (tmp_path, tmp_path, tmp_path, str(cxx)))
  monkeypatch.setenv("CMNET_JAX_CACHE", str(tmp_path / "cache"))
  return tmp_path / "cache", lambda: len(count.read_text().split()) if count.exists() else 0


def test_cached_library_is_built_privately_with_its_sha256_and_reused(fake_build):
  """Issue 23: a `.so` at the predictable cache name was loaded with no check."""
  cache, compiled = fake_build
  old = os.umask(0o002)          # a group-writable umask must not make the library so
  try:
    out = onednn._build()
  finally:
    os.umask(old)
  digest = out.with_name(out.name + ".sha256")
  assert out.parent == cache and out.read_bytes() == b"library 1" and compiled() == 1
  assert digest.read_text().strip() == hashlib.sha256(b"library 1").hexdigest()
  assert stat.S_IMODE(cache.stat().st_mode) == 0o700
  assert not (out.stat().st_mode | digest.stat().st_mode) & 0o022
  assert sorted(p.name for p in cache.iterdir()) == sorted([out.name, digest.name])  # no temp
  assert onednn._build() == out and compiled() == 1                                 # reused


@pytest.mark.parametrize("plant", ["other content", "no digest", "group-writable",
                                   "another owner", "symlink"])
def test_a_cached_library_that_cannot_be_trusted_is_never_loaded_but_rebuilt(
    fake_build, tmp_path, plant):
  cache, compiled = fake_build
  out = onednn._build()
  digest = out.with_name(out.name + ".sha256")
  if plant == "other content":
    out.write_bytes(b"someone else's code")
  elif plant == "no digest":
    digest.unlink()
  elif plant == "group-writable":
    out.chmod(0o775)
  elif plant == "another owner":
    if os.geteuid() != 0:
      pytest.skip("changing a file's owner needs root")
    os.chown(out, 12345, -1)
  else:
    (tmp_path / "evil.so").write_bytes(b"evil")
    out.unlink()
    out.symlink_to(tmp_path / "evil.so")
  with pytest.warns(RuntimeWarning, match=f"not loading the cached {out}: .*compiling it again"):
    assert onednn._build() == out
  assert out.read_bytes() == b"library 2" and compiled() == 2 and not out.is_symlink()
  assert digest.read_text().strip() == hashlib.sha256(b"library 2").hexdigest()


@pytest.mark.parametrize("folder", ["writable by others", "another owner"])
def test_a_cache_folder_others_may_write_is_refused(fake_build, folder):
  cache, compiled = fake_build
  cache.mkdir(mode=0o700)
  if folder == "writable by others":
    cache.chmod(0o777)
    match = "may be written by other users \\(mode 0o777\\)"
  else:
    if os.geteuid() != 0:
      pytest.skip("changing a folder's owner needs root")
    os.chown(cache, 12345, -1)
    match = "does not belong to this user"
  with pytest.raises(onednn.OnednnUnavailable, match=f"cache folder {cache} {match}.*"
                     "nothing was loaded. Set CMNET_JAX_CACHE"):
    onednn._build()
  assert compiled() == 0 and list(cache.iterdir()) == []
