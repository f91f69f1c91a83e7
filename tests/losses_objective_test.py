"""Tests of softmax_cross_entropy (vs NumPy float64 and optax) and the objective factory."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads

from cmnet_jax import losses
from configs import common


def _reference_ce(logits, labels, smoothing, weights):
  """float64 NumPy cross-entropy from the formula."""
  out = []
  for z, y in zip(logits.astype(np.float64), labels):
    log_p = z - z.max() - np.log(np.exp(z - z.max()).sum())
    target = np.full(len(z), smoothing / len(z))
    target[y] += 1 - smoothing
    out.append(-(target * log_p).sum() * (1.0 if weights is None else weights[y]))
  return np.array(out)


def test_cross_entropy_matches_references():
  rng = np.random.default_rng(0)
  logits = (rng.normal(size=(6, 5)) * 3).astype(np.float32)
  labels = rng.integers(0, 5, size=6)
  weights = rng.uniform(0.5, 2, size=5).astype(np.float32)
  np.testing.assert_allclose(losses.softmax_cross_entropy(logits, labels),
                             optax.softmax_cross_entropy_with_integer_labels(logits, labels),
                             rtol=1e-6)
  got = losses.softmax_cross_entropy(logits, labels, label_smoothing=0.1, class_weights=weights)
  np.testing.assert_allclose(got, _reference_ce(logits, labels, 0.1, weights), rtol=1e-5)
  where = np.array([1, 0, 1, 1, 0, 1], bool)
  masked = losses.softmax_cross_entropy(logits, labels, where=where, label_smoothing=0.1)
  np.testing.assert_allclose(masked, np.where(where, _reference_ce(logits, labels, 0.1, None), 0),
                             rtol=1e-5)
  jitted = jax.jit(lambda z: losses.softmax_cross_entropy(z, labels, label_smoothing=0.1))
  np.testing.assert_allclose(jitted(logits), _reference_ce(logits, labels, 0.1, None), rtol=1e-5)
  check_grads(lambda z: losses.softmax_cross_entropy(z, labels, label_smoothing=0.1).sum(),
              (logits,), order=1, modes=["rev"], eps=1e-2, atol=1e-2, rtol=1e-2)
  with pytest.raises(ValueError, match="labels must be integers"):
    losses.softmax_cross_entropy(logits, labels.astype(np.float32))
  with pytest.raises(ValueError, match="class_weights"):
    losses.softmax_cross_entropy(logits, labels, class_weights=weights[:3])


def test_objective_combines_masked_means():
  objective = losses.make_objective({"id": 0.1, "wilcoxon": 0.5, "ce": 1.0})
  terms = {"id": jnp.array([1., 2., 30.]), "wilcoxon": jnp.array(0.4), "ce": jnp.array([3., 5., 70.])}
  where = jnp.array([True, True, False])
  total, means = jax.jit(objective)(terms, where)
  assert set(means) == {"id", "wilcoxon", "ce"}
  np.testing.assert_allclose([means["id"], means["wilcoxon"], means["ce"]], [1.5, 0.4, 4.0])
  np.testing.assert_allclose(total, 0.1 * 1.5 + 0.5 * 0.4 + 4.0, rtol=1e-6)
  total, means = objective(terms)
  np.testing.assert_allclose(total, 0.1 * 11 + 0.5 * 0.4 + 26.0, rtol=1e-6)
  grads = jax.grad(lambda t: objective(t, where)[0])(terms)
  np.testing.assert_allclose(grads["ce"], [0.5, 0.5, 0.0])


def test_objective_errors_and_zero_coefficients():
  with pytest.raises(ValueError, match=r"unknown term name\(s\) \['wrst'\]"):
    losses.make_objective({"wrst": 1.0})
  objective = losses.make_objective({"ce": 1.0, "id": 0.0})
  total, means = objective({"ce": jnp.array([2.0])})
  assert float(total) == 2.0 and list(means) == ["ce"]
  with pytest.raises(ValueError, match=r"missing term\(s\) \['ce'\]"):
    objective({"id": jnp.array([1.0])})
  with pytest.raises(ValueError, match="no coefficient"):
    objective({"ce": jnp.array([1.0]), "wilcoxon": jnp.array([1.0])})
  with pytest.raises(ValueError, match="where has shape"):
    objective({"ce": jnp.array([1.0, 2.0])}, jnp.array([True]))
