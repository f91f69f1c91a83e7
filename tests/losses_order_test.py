"""Tests of soft_spearman / order_loss against scipy.stats.spearmanr, with masks and gradients."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy import stats

from cmnet_jax.losses import order_loss
from cmnet_jax.losses import soft_spearman


def _data(batch=5, n=9, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(batch, n)).astype(np.float32)
  x[:, 3] = x[:, 5]                                           # ties in x
  y = np.round(rng.uniform(size=(batch, n)), 1).astype(np.float32)   # ties in y
  return x, y


def test_exact_matches_scipy_with_ties_and_masks():
  x, y = _data()
  for b in range(len(x)):
    got = soft_spearman(x[b], y[b], temperature=0.)
    np.testing.assert_allclose(got, stats.spearmanr(x[b], y[b]).statistic, rtol=1e-5, atol=1e-6)
  valid = np.arange(9) < 6
  junk = np.where(valid, x[0], 1e3).astype(np.float32)
  got = soft_spearman(junk, y[0], temperature=0., where=valid)
  np.testing.assert_allclose(got, stats.spearmanr(x[0][:6], y[0][:6]).statistic, rtol=1e-5)


def test_smooth_converges_to_exact_and_is_scale_free():
  x, y = _data(seed=1)
  exact = np.array([stats.spearmanr(a, b).statistic for a, b in zip(x, y)])
  errors = [np.abs(1 - np.asarray(order_loss(x, y, temperature=k)) - exact).max()
            for k in (0.3, 0.03, 0.003)]
  assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-2
  np.testing.assert_allclose(order_loss(1e-3 * x + 0.5, y, temperature=0.1),
                             order_loss(x, y, temperature=0.1), rtol=1e-4, atol=1e-5)


def test_order_is_what_it_sees():
  proto = np.array([0.1, 0.33, 0.55, 0.78, 1.0, 0.78, 0.55, 0.33, 0.1], np.float32)
  inverted = (1.1 - proto)[None]
  permuted = proto[np.random.default_rng(0).permutation(9)][None]
  np.testing.assert_allclose(order_loss(proto[None], proto, temperature=0.), [0.0], atol=1e-6)
  np.testing.assert_allclose(order_loss(inverted, proto, temperature=0.), [2.0], atol=1e-6)
  assert 0.2 < float(order_loss(permuted, proto, temperature=0.)[0]) < 2.0
  np.testing.assert_allclose(order_loss(np.full((1, 9), 0.5, np.float32), proto,
                                        temperature=0.1), [1.0])   # constant: rho = 0


def test_jit_vmap_and_gradients():
  x, y = _data(seed=2)
  f = lambda a: order_loss(a, y, temperature=0.3)
  np.testing.assert_allclose(jax.jit(f)(x), f(x), rtol=1e-6)
  stacked = jax.vmap(f)(jnp.stack([x, 2 * x + 1]))
  np.testing.assert_allclose(stacked[1], f(x), rtol=1e-4, atol=1e-6)
  check_grads(lambda a: f(a).sum(), (x,), order=1, modes=["rev"], eps=1e-2, atol=2e-2, rtol=2e-2)
  # Moving the apex frame up improves the order of a flat-ish curve: the gradient says so.
  proto = np.array([0.1, 0.55, 1.0, 0.55, 0.1], np.float32)
  s = np.array([[0.5, 0.52, 0.49, 0.51, 0.5]], np.float32)
  grad = jax.grad(lambda a: order_loss(a, proto, temperature=0.3).sum())(s)
  assert grad[0, 2] < 0 and np.isfinite(np.asarray(jax.grad(
      lambda a: order_loss(a, proto, temperature=0.3).sum())(np.zeros_like(s)))).all()


def test_bad_input_raises():
  x, y = _data()
  with pytest.raises(ValueError, match="target"):
    order_loss(x, y[:, :4], temperature=0.1)
  with pytest.raises(ValueError, match="temperature"):
    order_loss(x, y, temperature=-1.0)
  with pytest.raises(ValueError, match="soft_spearman: y"):
    soft_spearman(x[0], y[0, :3], temperature=0.1)
