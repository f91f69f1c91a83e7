"""Tests for cmnet_jax.models: shapes, heads/LSTM vs NumPy, time folding, vmap, overfit, npz."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cmnet_jax.models import (CMNet, build, im2col_conv, load_pretrained, load_resnet18_npz,
                              prepare_inputs)
from configs.common import model_config


def tiny_config(encoder="small_cnn", input_mode="raw", dtype="float32", dropout=0.2):
  c = model_config("paper" if encoder == "resnet18" else "small")
  c.widths = (4, 4, 8, 8) if encoder == "resnet18" else (4, 8)
  c.feature_dim, c.embedding_dim, c.lstm_hidden, c.norm_groups = 6, 5, 7, 2
  c.input_mode, c.dtype, c.dropout = input_mode, dtype, dropout
  return c


def rngs(seed=0):
  # 'rbg' keys compile in a fraction of threefry's time on CPU; the model does not care.
  return {"params": jax.random.key(seed, impl="rbg"),
          "dropout": jax.random.key(seed + 1, impl="rbg")}


def init(model, clips, seed=0):
  return jax.jit(model.init)(rngs(seed), clips)


def clips_of(shape, seed=0):
  return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.mark.parametrize("encoder,b,t,h,w,mode,dtype", [
    ("small_cnn", 1, 1, 16, 16, "raw", "float32"),
    ("small_cnn", 3, 5, 17, 23, "both", "bfloat16"),
    ("resnet18", 2, 9, 17, 23, "onset_difference", "bfloat16"),
])
def test_output_shapes_and_dtypes(encoder, b, t, h, w, mode, dtype):
  model = build(tiny_config(encoder, mode, dtype), num_classes=4)
  clips = jax.ShapeDtypeStruct((b, t, h, w, 3), jnp.uint8)
  variables = jax.eval_shape(model.init, rngs(), clips)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables))
  out = jax.eval_shape(lambda v, x: model.apply(v, x, train=True, rngs=rngs()), variables, clips)
  assert out.logits.shape == (b, 4)
  assert out.intensities.shape == (b, t)
  assert out.intensity_embeddings.shape == (b, t, 5)
  assert out.features.shape == (b, t, 6)
  assert all(a.dtype == jnp.float32 for a in out)
  s, z = jax.eval_shape(lambda v, x: model.apply(v, x, method="intensity_branch"), variables, clips)
  assert (s.shape, z.shape) == ((b, t), (b, t, 5))


def np_sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


@pytest.fixture(scope="module")
def small():
  """One tiny small_cnn model (raw input), initialised and jitted once."""
  model = build(tiny_config(), num_classes=4)
  clips = clips_of((2, 4, 16, 16, 3), seed=3)
  apply = jax.jit(model.apply, static_argnames=("train", "method"))
  return model, init(model, clips), apply, clips


def test_heads_and_lstm_match_numpy(small):
  model, variables, apply, clips = small
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), variables["params"])
  out = apply(variables, clips, train=False)
  h = np.asarray(jax.jit(lambda v, x: model.apply(v, x, method=lambda m, y: m._encode(
      m.ice, prepare_inputs(y, m.input_mode))))(variables, clips), np.float64)
  # squeeze and projection head
  s = np_sigmoid(h @ p["squeeze"]["kernel"] + p["squeeze"]["bias"])[..., 0]
  np.testing.assert_allclose(out.intensities, s, atol=1e-5)
  hid = np.maximum(h @ p["projection_hidden"]["kernel"] + p["projection_hidden"]["bias"], 0)
  z = hid @ p["projection"]["kernel"] + p["projection"]["bias"]
  np.testing.assert_allclose(out.intensity_embeddings, z, atol=1e-5)
  # extend, fusion, LSTM equations, final hidden state, classifier
  f = np.asarray(out.features, np.float64)
  e = f * (s[..., None] @ p["extend"]["kernel"] + p["extend"]["bias"])
  cell = p["lstm"]["cell"]

  def gate(n, x, hh):
    return x @ cell["i" + n]["kernel"] + hh @ cell["h" + n]["kernel"] + cell["h" + n]["bias"]

  hs, cs = np.zeros((2, 7)), np.zeros((2, 7))
  for t in range(e.shape[1]):
    x = e[:, t]
    i, fg = np_sigmoid(gate("i", x, hs)), np_sigmoid(gate("f", x, hs))
    g, o = np.tanh(gate("g", x, hs)), np_sigmoid(gate("o", x, hs))
    cs = fg * cs + i * g
    hs = o * np.tanh(cs)
  logits = hs @ p["classifier"]["kernel"] + p["classifier"]["bias"]
  np.testing.assert_allclose(out.logits, logits, atol=1e-5)


def random_variables(model, clips, seed=0):
  """Variables with the model's structure, filled from NumPy (skips compiling `init`)."""
  shapes = jax.eval_shape(model.init, rngs(), clips)
  gen = np.random.default_rng(seed)
  return jax.tree.map(lambda a: jnp.asarray(0.2 * gen.standard_normal(a.shape), a.dtype), shapes)


@pytest.fixture(scope="module")
def resnet():
  """A tiny resnet18 CMNet on onset differences, with random weights, jitted once."""
  model = build(tiny_config("resnet18", "onset_difference"), num_classes=3)
  clips = clips_of((3, 3, 16, 16, 3), seed=1)
  return model, random_variables(model, clips), jax.jit(model.apply), clips


def test_time_folding_equals_per_frame(small):
  """Every frame encoded alone (a 1-frame clip, same onset reference) == the folded encoding."""
  _, variables, apply, clips = small
  out = apply(variables, clips)
  for t in range(clips.shape[1]):
    one = apply(variables, clips[:, t:t + 1], reference=clips[:, :1])
    np.testing.assert_allclose(one.features[:, 0], out.features[:, t], atol=1e-5)
    np.testing.assert_allclose(one.intensities[:, 0], out.intensities[:, t], atol=1e-6)
    np.testing.assert_allclose(one.intensity_embeddings[:, 0], out.intensity_embeddings[:, t],
                               atol=1e-5)


def test_resnet_encodes_frames_independently(resnet):
  """Shuffling frames across clips and time (each with its own onset reference) shuffles the
  per-frame outputs the same way: no mixing between frames of the folded batch."""
  _, variables, apply, clips = resnet
  b, t = clips.shape[:2]
  reference = np.repeat(clips[:, :1], t, axis=1)
  src = np.random.default_rng(0).permutation(b * t)
  sb, st = np.unravel_index(src, (b, t))
  shuffled = clips[sb, st].reshape(clips.shape)
  shuffled_ref = reference[sb, st].reshape(clips.shape)
  out = apply(variables, clips, reference=reference)
  mix = apply(variables, shuffled, reference=shuffled_ref)
  for name in ("features", "intensities", "intensity_embeddings"):
    want = np.asarray(getattr(out, name))[sb, st].reshape(getattr(mix, name).shape)
    np.testing.assert_allclose(getattr(mix, name), want, rtol=1e-4, atol=1e-5)
  assert np.isfinite(np.asarray(out.logits)).all()


def test_input_modes_match_formula():
  x = clips_of((2, 3, 4, 5, 3), seed=2)
  xf = x.astype(np.float64) / 255
  raw = (xf - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
  diff = 10.0 * (xf - xf[:, :1])
  np.testing.assert_allclose(prepare_inputs(x, "raw"), raw, atol=1e-5)
  np.testing.assert_allclose(prepare_inputs(xf.astype(np.float32), "onset_difference"), diff,
                             atol=1e-5)
  np.testing.assert_allclose(prepare_inputs(x, "both"), np.concatenate([raw, diff], -1),
                             atol=1e-5)
  with pytest.raises(ValueError, match=r"\[batch, time, height, width, 3\]"):
    prepare_inputs(x[0], "raw")
  with pytest.raises(TypeError, match="uint8 or float"):
    prepare_inputs(x.astype(np.int32), "raw")


def test_intensity_branch_shares_params_and_dropout(small):
  _, variables, apply, clips = small
  out = apply(variables, clips, train=False)
  s, z = apply(variables, clips, method=CMNet.intensity_branch)
  np.testing.assert_allclose(s, out.intensities, atol=1e-7)
  np.testing.assert_allclose(z, out.intensity_embeddings, atol=1e-7)
  train = lambda k: apply(variables, clips, train=True,  # noqa: E731
                          rngs={"dropout": jax.random.key(k, impl="rbg")}).logits
  assert not np.allclose(train(0), train(1))
  np.testing.assert_array_equal(train(0), train(0))
  np.testing.assert_array_equal(out.logits, apply(variables, clips, train=False).logits)


def test_vmap_over_stacked_folds_and_bfloat16(small):
  model, v0, apply, clips = small
  v1 = jax.tree.map(lambda a: 1.1 * a + 0.01, v0)
  stacked = jax.tree.map(lambda a, b: jnp.stack([a, b]), v0, v1)
  two = np.stack([clips, clips[::-1]])
  both = jax.jit(jax.vmap(lambda v, x: model.apply(v, x).logits))(stacked, two)
  np.testing.assert_allclose(both[0], apply(v0, two[0]).logits, atol=1e-5)
  np.testing.assert_allclose(both[1], apply(v1, two[1]).logits, atol=1e-5)
  half = build(tiny_config(dtype="bfloat16"), num_classes=4)
  out = jax.jit(half.apply)(v0, clips)
  assert out.logits.dtype == jnp.float32
  np.testing.assert_allclose(out.logits, apply(v0, clips).logits, atol=0.1)


@pytest.mark.parametrize("k,stride,pad,c,o", [
    (3, 1, 1, 3, 4), (3, 2, 1, 5, 6), (7, 2, 3, 3, 4), (1, 2, 0, 4, 8), (3, 1, 0, 2, 3)])
def test_im2col_conv_matches_lax_conv_and_gradients(k, stride, pad, c, o):
  """The CPU convolution path equals lax.conv_general_dilated: outputs and both gradients."""
  x = np.random.default_rng(0).normal(size=(2, 9, 11, c)).astype(np.float32)
  w = np.random.default_rng(1).normal(size=(k, k, c, o)).astype(np.float32)
  dn = ("NHWC", "HWIO", "NHWC")
  args = ((stride, stride), ((pad, pad), (pad, pad)))
  ref = lambda x, w: jax.lax.conv_general_dilated(x, w, *args, dimension_numbers=dn)  # noqa: E731
  got = lambda x, w: im2col_conv(x, w, *args, dimension_numbers=dn)  # noqa: E731
  np.testing.assert_allclose(got(x, w), ref(x, w), rtol=1e-4, atol=1e-4)
  cot = np.random.default_rng(2).normal(size=ref(x, w).shape).astype(np.float32)
  loss = lambda f: lambda x, w: jnp.sum(f(x, w) * cot)  # noqa: E731
  for g, r in zip(jax.grad(loss(got), (0, 1))(x, w), jax.grad(loss(ref), (0, 1))(x, w)):
    np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-3)
  # Vmapped over per-fold kernels (the fold-parallel case): fold i uses kernel i.
  w2 = np.stack([w, -0.5 * w])
  np.testing.assert_allclose(jax.vmap(got, (None, 0))(x, w2)[1], ref(x, w2[1]), atol=1e-4)


def test_im2col_gradient_in_frame_blocks_matches_lax_conv():
  """The hand-written im2col gradient (kernel gradient summed over blocks of frames), with
  several blocks, and vmapped over per-fold kernels and inputs."""
  from cmnet_jax.models.convolution import _frames_per_block
  assert [_frames_per_block(n, p) for n, p in [(6, 1600), (72, 16), (72, 49), (7, 200)]] == [
      1, 36, 18, 1]
  dn = ("NHWC", "HWIO", "NHWC")
  args = ((2, 2), ((1, 1), (1, 1)))
  x = np.random.default_rng(0).normal(size=(2, 6, 66, 70, 3)).astype(np.float32)  # 6 blocks
  w = np.random.default_rng(1).normal(size=(2, 3, 3, 3, 5)).astype(np.float32)
  cot = np.random.default_rng(2).normal(size=(2, 6, 33, 35, 5)).astype(np.float32)
  grad = lambda conv: jax.jit(jax.vmap(jax.grad(  # noqa: E731
      lambda x, w, c: jnp.sum(conv(x, w, *args, dimension_numbers=dn) * c), (0, 1))))
  got, ref = grad(im2col_conv)(x, w, cot), grad(jax.lax.conv_general_dilated)(x, w, cot)
  for g, r in zip(got, ref):
    np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-3)


def max_pool_grad_float64(x, dy, window, stride, pad):
  """The max-pool gradient written from the rule: each window's output gradient goes to its first
  maximum in row-major window order (XLA's select-and-scatter), in float64."""
  xp = np.pad(np.asarray(x, np.float64), ((0, 0), (pad, pad), (pad, pad), (0, 0)),
              constant_values=-np.inf)
  dx = np.zeros_like(xp)
  n, oh, ow, c = dy.shape
  for b, i, j, ch in np.ndindex(n, oh, ow, c):
    win = xp[b, stride * i:stride * i + window, stride * j:stride * j + window, ch]
    t = int(np.argmax(win))  # first maximum in row-major order
    dx[b, stride * i + t // window, stride * j + t % window, ch] += dy[b, i, j, ch]
  return dx[:, pad:pad + x.shape[1], pad:pad + x.shape[2]]


@pytest.mark.parametrize("window,stride,pad,shape,ties", [
    (3, 2, 1, (2, 9, 9, 3), False), (3, 2, 1, (2, 10, 11, 2), True), (2, 2, 0, (1, 8, 7, 2), True),
    (3, 1, 1, (2, 6, 5, 2), True), (3, 3, 0, (1, 13, 12, 2), False), (2, 3, 0, (1, 9, 9, 1), False)])
def test_max_pool_matches_flax_and_routes_gradient_to_first_maximum(window, stride, pad, shape,
                                                                    ties):
  """encoders.max_pool: nn.max_pool's values; its hand-written gradient = the float64 rule and
  nn.max_pool's autodiff gradient, ties included (integer-valued inputs tie often)."""
  import flax.linen as nn
  from cmnet_jax.models import encoders
  gen = np.random.default_rng(sum(shape) + window)
  x = gen.normal(size=shape).astype(np.float32)
  if ties:
    x = np.round(x)
  ref = lambda x: nn.max_pool(x, (window,) * 2, (stride,) * 2, ((pad, pad),) * 2)  # noqa: E731
  ours = lambda x: encoders.max_pool(x, window, stride, pad)  # noqa: E731
  np.testing.assert_array_equal(ours(x), ref(x))
  dy = gen.normal(size=ref(x).shape).astype(np.float32)
  got = jax.jit(lambda x, dy: jax.vjp(ours, x)[1](dy)[0])(x, dy)
  np.testing.assert_allclose(got, max_pool_grad_float64(x, dy, window, stride, pad), atol=1e-6)
  np.testing.assert_allclose(got, jax.vjp(ref, x)[1](dy)[0], atol=1e-6)


def test_resnet_stem_uses_max_pool_with_hand_written_gradient(monkeypatch):
  """ResNet-18's gradient has no select-and-scatter (the form XLA:CPU expands slowly): its stem
  pools with encoders.max_pool (whose gradient the test above checks). Traced, not compiled."""
  import flax.linen as nn
  from cmnet_jax.models import encoders
  enc = encoders.ResNet18((4, 4, 8, 8), 6, 2, conv_impl="im2col")
  x = jnp.zeros((2, 20, 18, 3))
  v = jax.eval_shape(enc.init, jax.random.key(0), x)
  grad_jaxpr = lambda: str(jax.make_jaxpr(jax.grad(  # noqa: E731
      lambda v: jnp.sum(enc.apply(v, x) ** 2)))(v))
  assert "select_and_scatter" not in grad_jaxpr()
  monkeypatch.setattr(encoders, "max_pool", lambda x, k, s, p: nn.max_pool(
      x, (k, k), (s, s), ((p, p), (p, p))))
  assert "select_and_scatter" in grad_jaxpr()  # the check sees the flax form


@pytest.mark.parametrize("shape,groups,dtype", [
    ((3, 5, 7, 8), 4, jnp.float32), ((2, 4, 4, 6), 1, jnp.float32), ((2, 3, 8), 2, jnp.float32),
    ((2, 6, 5, 8), 2, jnp.bfloat16)])
def test_group_norm_matches_flax(shape, groups, dtype):
  """encoders.GroupNorm = flax.linen.GroupNorm: same parameters, outputs and gradients."""
  import flax.linen as nn
  from cmnet_jax.models.encoders import GroupNorm
  x = (3 * np.random.default_rng(0).normal(size=shape) + 1).astype(np.float32)
  x = jnp.asarray(x, dtype)
  mine, ref = GroupNorm(groups, dtype=dtype), nn.GroupNorm(num_groups=groups, dtype=dtype)
  v = ref.init(jax.random.key(0), x)
  assert jax.tree.structure(v) == jax.tree.structure(mine.init(jax.random.key(0), x))
  v = jax.tree.map(lambda p: p + 0.1 * jnp.arange(p.size, dtype=p.dtype).reshape(p.shape), v)
  a, b = mine.apply(v, x), ref.apply(v, x)
  assert a.dtype == b.dtype == dtype
  tol = 2e-2 if dtype == jnp.bfloat16 else 1e-5
  np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32), atol=tol)
  cot = np.random.default_rng(1).normal(size=shape).astype(np.float32)
  grad = lambda m: jax.grad(  # noqa: E731
      lambda v, x: jnp.sum(m.apply(v, x).astype(jnp.float32) * cot), (0, 1))(v, x)
  for g, r in zip(jax.tree.leaves(grad(mine)), jax.tree.leaves(grad(ref))):
    np.testing.assert_allclose(np.asarray(g, np.float32), np.asarray(r, np.float32),
                               rtol=tol, atol=tol * max(1.0, float(jnp.max(jnp.abs(r)))))


@pytest.mark.parametrize("mode", ["raw", "onset_difference"])
def test_with_positives_equals_call_and_intensity_branch(mode):
  """One ICE call on clips + positive views = `__call__` and `intensity_branch` separately:
  outputs (with dropout), the views' embeddings, and the gradient of a loss on all of them."""
  model = build(tiny_config(input_mode=mode), num_classes=4)
  clips, views = clips_of((2, 4, 16, 16, 3), seed=3), clips_of((2, 4, 16, 16, 3), seed=4)
  refs = clips_of((2, 4, 16, 16, 3), seed=5) if mode != "raw" else None
  v = init(model, clips)
  drop = {"dropout": jax.random.key(7, impl="rbg")}

  def fused(v):
    out, z_pos = model.apply(v, clips, views, train=True, rngs=drop, positives_reference=refs,
                             method="with_positives")
    return out, z_pos

  def separate(v):
    out = model.apply(v, clips, train=True, rngs=drop)
    _, z_pos = model.apply(v, views, reference=refs, method="intensity_branch")
    return out, z_pos

  (a, za), (b, zb) = jax.jit(fused)(v), jax.jit(separate)(v)
  for x, y in zip(list(a) + [za], list(b) + [zb]):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5)
  loss = lambda f: lambda v: sum(  # noqa: E731
      jnp.sum(jnp.sin(t)) for t in jax.tree.leaves(f(v)))
  for g, r in zip(jax.tree.leaves(jax.jit(jax.grad(loss(fused)))(v)),
                  jax.tree.leaves(jax.jit(jax.grad(loss(separate)))(v))):
    np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("encoder", ["small_cnn", "resnet18"])
def test_conv_impls_share_params_and_agree(encoder):
  clips = clips_of((2, 3, 17, 19, 3))
  cfg = tiny_config(encoder)
  cfg.conv_impl = "xla"
  xla = build(cfg, 3)
  cfg.conv_impl = "im2col"
  mine = build(cfg, 3)
  v = init(xla, clips)
  assert jax.tree.structure(v) == jax.tree.structure(init(mine, clips))
  # The im2col model really has no convolution op (a fallback would still agree numerically).
  assert "conv_general_dilated" in str(jax.make_jaxpr(xla.apply)(v, clips))
  assert "conv_general_dilated" not in str(jax.make_jaxpr(mine.apply)(v, clips))
  a, b = jax.jit(xla.apply)(v, clips), jax.jit(mine.apply)(v, clips)
  np.testing.assert_allclose(a.logits, b.logits, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(a.intensities, b.intensities, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("h,w,grid", [(8, 8, 2), (9, 7, 3), (4, 6, 4), (5, 5, 1)])
def test_head_pool_grid_equals_block_means(h, w, grid):
  """The head's grid pooling: block means over a (cropped) grid, flattened row-major."""
  from cmnet_jax.models.encoders import _Head
  c = 3
  x = np.random.default_rng(0).normal(size=(2, h, w, c)).astype(np.float32)
  gh, gw = min(grid, h), min(grid, w)
  bh, bw = h // gh, w // gw
  blocks = x[:, :gh * bh, :gw * bw].reshape(2, gh, bh, gw, bw, c).mean(axis=(2, 4))
  head = _Head(feature_dim=gh * gw * c, pool_grid=grid)  # no projection: sizes already match
  out = head.apply(head.init(jax.random.key(0), x), x)
  np.testing.assert_allclose(out, blocks.reshape(2, -1), rtol=1e-5, atol=1e-6)


def changed(**kw):
  c = tiny_config()
  c.update(kw)
  return c


def test_build_rejects_bad_config():
  with pytest.raises(ValueError, match="model.encoder"):
    build(changed(encoder="vgg"), 3)
  with pytest.raises(ValueError, match="norm_groups"):
    build(changed(widths=(4, 5)), 3)
  with pytest.raises(ValueError, match="model.input_mode"):
    build(changed(input_mode="flow"), 3)
  with pytest.raises(ValueError, match="model.input_mode: expected one of .*'flow'"):
    prepare_inputs(jnp.zeros((1, 2, 4, 4, 3)), "flow")
  with pytest.raises(ValueError, match="model.dtype"):
    build(changed(dtype="float16"), 3)
  with pytest.raises(ValueError, match="model.pool_grid"):
    build(changed(pool_grid=0), 3)
  with pytest.raises(ValueError, match="model.conv_impl"):
    build(changed(conv_impl="fft"), 3)
  with pytest.raises(ValueError, match="resnet18"):
    build(changed(pretrained_npz="w.npz"), 3)
  cfg = tiny_config().to_dict()
  del cfg["lstm_hidden"]
  with pytest.raises(KeyError, match="lstm_hidden"):
    build(cfg, 3)


OVERFIT_STEPS = 60  # reaches 100 % at about step 30 here


def test_overfit_one_batch(small):
  """The small model with cross-entropy reaches 100% training accuracy on 8 clips."""
  model, variables, apply, _ = small
  clips = clips_of((8, 3, 16, 16, 3), seed=6)
  labels = jnp.arange(8) % 4
  params = variables["params"]
  tx = optax.adam(1e-2)
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state, key):
    def loss_fn(p):
      logits = model.apply({"params": p}, clips, train=True, rngs={"dropout": key}).logits
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    grads = jax.grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  key = jax.random.key(0, impl="rbg")
  for i in range(OVERFIT_STEPS):
    params, opt_state = step(params, opt_state, jax.random.fold_in(key, i))
  logits = apply({"params": params}, clips).logits
  assert float(jnp.mean(jnp.argmax(logits, -1) == labels)) == 1.0


def torchvision_resnet18_state(widths, seed=0):
  """A fake torchvision ResNet-18 state_dict (names and shapes of torchvision.models.resnet18)."""
  gen = np.random.default_rng(seed)
  arr = lambda *shape: gen.standard_normal(shape).astype(np.float32)  # noqa: E731

  def bn(prefix, c):
    return {f"{prefix}.weight": arr(c), f"{prefix}.bias": arr(c), f"{prefix}.running_mean": arr(c),
            f"{prefix}.running_var": arr(c) ** 2, f"{prefix}.num_batches_tracked": np.array(7)}

  state = {"conv1.weight": arr(widths[0], 3, 7, 7), **bn("bn1", widths[0])}
  c_in = widths[0]
  for layer, w in enumerate(widths, start=1):
    for block in range(2):
      p = f"layer{layer}.{block}"
      state[f"{p}.conv1.weight"] = arr(w, c_in if block == 0 else w, 3, 3)
      state.update(bn(f"{p}.bn1", w))
      state[f"{p}.conv2.weight"] = arr(w, w, 3, 3)
      state.update(bn(f"{p}.bn2", w))
      if block == 0 and layer > 1:
        state[f"{p}.downsample.0.weight"] = arr(w, c_in, 1, 1)
        state.update(bn(f"{p}.downsample.1", w))
    c_in = w
  state["fc.weight"], state["fc.bias"] = arr(10, widths[-1]), arr(10)
  return state


def test_load_resnet18_npz(resnet, tmp_path):
  model, variables, apply, clips = resnet
  state = torchvision_resnet18_state((4, 4, 8, 8))
  np.savez(tmp_path / "r18.npz", **state)
  params = load_resnet18_npz(variables["params"], tmp_path / "r18.npz", into="ice")
  ice, ffe = params["ice"], params["ffe"]
  np.testing.assert_array_equal(ice["conv1"]["kernel"], state["conv1.weight"].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(ice["norm1"]["scale"], state["bn1.weight"])
  np.testing.assert_array_equal(ice["layer3_1"]["conv2"]["kernel"],
                                state["layer3.1.conv2.weight"].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(ice["layer2_0"]["downsample_conv"]["kernel"][0, 0],
                                state["layer2.0.downsample.0.weight"][:, :, 0, 0].T)
  np.testing.assert_array_equal(ice["layer4_0"]["downsample_norm"]["bias"],
                                state["layer4.0.downsample.1.bias"])
  # FFE and the heads are untouched; the loaded params still run.
  same = jax.tree.map(np.array_equal, ffe, dict(variables["params"]["ffe"]))
  assert all(jax.tree.leaves(same))
  assert np.isfinite(np.asarray(apply({"params": params}, clips).logits)).all()


def test_load_pretrained_follows_config(small, tmp_path):
  """'both' input mode: conv1's 3 pretrained input channels repeat for raw and difference."""
  model = build(tiny_config("resnet18", "both"), num_classes=3)
  params = random_variables(model, clips_of((1, 2, 16, 16, 3)))["params"]
  cfg = tiny_config("resnet18", "both")
  assert load_pretrained(params, cfg) is params  # '' = random init, untouched
  state = torchvision_resnet18_state((4, 4, 8, 8), seed=1)
  np.savez(tmp_path / "r18.npz", **state)
  cfg.pretrained_npz, cfg.pretrained_into = str(tmp_path / "r18.npz"), "both"
  loaded = load_pretrained(params, cfg)
  k = state["conv1.weight"].transpose(2, 3, 1, 0)
  for part in ("ice", "ffe"):
    np.testing.assert_array_equal(loaded[part]["conv1"]["kernel"], np.concatenate([k, k], axis=2))
  with pytest.raises(ValueError, match="not a ResNet18"):
    load_resnet18_npz(small[1]["params"], tmp_path / "r18.npz", into="ice")


def test_load_resnet18_npz_errors(resnet, tmp_path):
  _, variables, _, _ = resnet
  state = torchvision_resnet18_state((4, 4, 8, 8))
  missing = {k: v for k, v in state.items() if k != "layer2.0.downsample.1.weight"}
  np.savez(tmp_path / "missing.npz", **missing)
  with pytest.raises(ValueError, match=r"missing\.npz.*layer2\.0\.downsample\.1\.weight"):
    load_resnet18_npz(variables["params"], tmp_path / "missing.npz", into="both")
  wrong = dict(state, **{"layer3.0.conv1.weight": np.zeros((8, 4, 5, 5), np.float32)})
  np.savez(tmp_path / "wrong.npz", **wrong)
  with pytest.raises(ValueError, match=r"layer3\.0\.conv1\.weight.*\(8, 4, 5, 5\).*\(8, 4, 3, 3\)"):
    load_resnet18_npz(variables["params"], tmp_path / "wrong.npz", into="ffe")
  (tmp_path / "junk.npz").write_bytes(b"not an npz")
  with pytest.raises(ValueError, match=r"junk\.npz"):
    load_resnet18_npz(variables["params"], tmp_path / "junk.npz", into="ice")
  with pytest.raises(ValueError, match="pretrained_into"):
    load_resnet18_npz(variables["params"], tmp_path / "wrong.npz", into="all")


def test_minmax_gate_rescales_s_per_clip_in_the_fusion_only():
  """model.gate_norm='minmax' (issue 22): the fusion sees (s - min s) / (max s - min s) per clip
  over the frames after the onset (the onset frame gets 0);
  the output's intensities stay s; an explicit gate (oracle, tent, ablation) is used as given."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from cmnet_jax.models import cmnet  # pylint: disable=import-outside-toplevel
  kw = dict(num_classes=3, encoder="small_cnn", widths=(8,), feature_dim=8, embedding_dim=4,
            lstm_hidden=4, norm_groups=4, dropout=0.0, input_mode="onset_difference")
  x = jax.random.uniform(jax.random.PRNGKey(0), (2, 4, 8, 8, 3))
  plain, minmax = cmnet.CMNet(**kw), cmnet.CMNet(**kw, gate_norm="minmax")
  params = plain.init(jax.random.PRNGKey(1), x)
  out = minmax.apply(params, x)
  s = np.asarray(plain.apply(params, x).intensities, np.float64)
  np.testing.assert_allclose(np.asarray(out.intensities), s, rtol=1e-6)
  # The onset frame (input all zero) is left out of the min and max and gets 0.
  lo, hi = s[:, 1:].min(1, keepdims=True), s[:, 1:].max(1, keepdims=True)
  gate = (s - lo) / (hi - lo)
  gate[:, 0] = 0.0
  # Reference: the plain model with the rescaled s given as the gate.
  ref = plain.apply(params, x, intensities=jnp.asarray(gate, jnp.float32)).logits
  np.testing.assert_allclose(np.asarray(out.logits), np.asarray(ref), rtol=1e-4, atol=1e-5)
  assert not np.allclose(np.asarray(out.logits), np.asarray(plain.apply(params, x).logits))
  given = jnp.full((2, 4), 0.3)
  np.testing.assert_allclose(np.asarray(minmax.apply(params, x, intensities=given).logits),
                             np.asarray(plain.apply(params, x, intensities=given).logits),
                             rtol=1e-6)


def test_softmax_gate_is_the_peak_scaled_temporal_softmax_in_the_fusion_only():
  """model.gate_norm='softmax' (issue 22): the fusion sees exp((s_t - max_t s) / tau) over the
  frames after the onset (the onset frame gets 0), i.e. the temporal softmax scaled so the
  strongest frame is 1; the output's intensities stay s. Reference: NumPy float64."""
  from cmnet_jax.models import cmnet  # pylint: disable=import-outside-toplevel
  kw = dict(num_classes=3, encoder="small_cnn", widths=(8,), feature_dim=8, embedding_dim=4,
            lstm_hidden=4, norm_groups=4, dropout=0.0, input_mode="onset_difference")
  x = jax.random.uniform(jax.random.PRNGKey(0), (2, 5, 8, 8, 3))
  plain = cmnet.CMNet(**kw)
  soft = cmnet.CMNet(**kw, gate_norm="softmax", gate_temperature=0.05)
  params = plain.init(jax.random.PRNGKey(1), x)
  out = soft.apply(params, x)
  s = np.asarray(plain.apply(params, x).intensities, np.float64)
  np.testing.assert_allclose(np.asarray(out.intensities), s, rtol=1e-6)
  e = np.exp(s[:, 1:] / 0.05)
  gate = np.concatenate([np.zeros((2, 1)), e / e.sum(1, keepdims=True)], 1)
  gate[:, 1:] /= gate[:, 1:].max(1, keepdims=True)
  np.testing.assert_allclose(gate.max(1), 1.0)
  ref = plain.apply(params, x, intensities=jnp.asarray(gate, jnp.float32)).logits
  np.testing.assert_allclose(np.asarray(out.logits), np.asarray(ref), rtol=1e-4, atol=1e-5)
  assert not np.allclose(np.asarray(out.logits), np.asarray(plain.apply(params, x).logits))
  # The gate's values themselves, and the temperature is read.
  got = cmnet.normalise_gate(jnp.asarray(s, jnp.float32), "softmax", skip_onset=True,
                             temperature=0.05)
  np.testing.assert_allclose(np.asarray(got), gate, rtol=1e-4, atol=1e-6)
  hot = cmnet.normalise_gate(jnp.asarray(s, jnp.float32), "softmax", skip_onset=True,
                             temperature=1.0)
  assert not np.allclose(np.asarray(hot), gate)
  with pytest.raises(ValueError, match="gate_norm"):
    cmnet.normalise_gate(jnp.asarray(s), "sparsemax")


def test_difference_gain_removes_a_global_brightness_drift_from_the_onset_difference():
  """model.difference_gain (issue 22): each frame is rescaled to its reference's mean brightness
  before the difference, x_t * mean(r) / mean(x_t); a frame that is the onset frame times a gain
  then differs from it by nothing (up to float rounding), and motion still shows."""
  rng = np.random.default_rng(0)
  onset = rng.uniform(0.2, 0.8, (6, 6, 3))
  moved = np.roll(onset, 1, axis=1)
  clip = np.stack([onset, 1.04 * onset, 0.97 * moved])[None]          # [1, 3, 6, 6, 3]
  plain = np.asarray(prepare_inputs(jnp.asarray(clip, jnp.float32), "onset_difference"))
  gained = np.asarray(prepare_inputs(jnp.asarray(clip, jnp.float32), "onset_difference",
                                     gain=True))
  # NumPy float64 from the formula.
  level = clip.mean(axis=(2, 3, 4), keepdims=True)
  ref = 10.0 * (clip * level[:, :1] / level - clip[:, :1])
  np.testing.assert_allclose(gained, ref, rtol=1e-4, atol=1e-5)
  assert np.abs(gained[0, 1]).max() < 1e-4 < np.abs(plain[0, 1]).max()
  assert np.abs(gained[0, 2]).max() > 0.1
  # 'raw' is untouched; 'both' changes only its difference channels.
  np.testing.assert_allclose(prepare_inputs(jnp.asarray(clip), "raw", gain=True),
                             prepare_inputs(jnp.asarray(clip), "raw"))
  both = np.asarray(prepare_inputs(jnp.asarray(clip, jnp.float32), "both", gain=True))
  np.testing.assert_allclose(both[..., 3:], gained, rtol=1e-5, atol=1e-6)
  # Built from the config.
  c = tiny_config(input_mode="onset_difference")
  c.difference_gain, c.gate_norm, c.gate_temperature = True, "softmax", 0.2
  m = build(c, 3)
  assert (m.difference_gain, m.gate_norm, m.gate_temperature) == (True, "softmax", 0.2)
