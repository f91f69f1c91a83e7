"""The scale term (cmnet_jax/losses/scale.py) against NumPy float64 written from the formula."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cmnet_jax import losses
from cmnet_jax.losses import scale


def _reference(s, mu, from_frame):
  s, mu = np.asarray(s, np.float64), np.asarray(mu, np.float64)
  return ((s[:, from_frame:] - mu[:, from_frame:]) ** 2).mean(axis=1)


@pytest.mark.parametrize("from_frame", [0, 1, 3])
def test_scale_loss_matches_numpy(from_frame):
  rng = np.random.default_rng(from_frame)
  s = rng.uniform(size=(5, 9)).astype(np.float32)
  mu = rng.uniform(size=(5, 9)).astype(np.float32)
  got = np.asarray(scale.scale_loss(jnp.asarray(s), jnp.asarray(mu), from_frame=from_frame))
  np.testing.assert_allclose(got, _reference(s, mu, from_frame), rtol=1e-6)


def test_scale_loss_gradient_pulls_towards_the_prototype():
  mu = jnp.array([[0.1, 0.55, 1.0, 0.55, 0.1]])
  s = jnp.full((1, 5), 0.6)
  grad = np.asarray(jax.grad(lambda x: scale.scale_loss(x, mu, from_frame=1).sum())(s))
  np.testing.assert_allclose(grad, 2.0 * (0.6 - np.asarray(mu)) / 4 * np.array([0, 1, 1, 1, 1]),
                             rtol=1e-6)
  assert grad[0, 2] < 0 < grad[0, 4]   # raise the apex, lower the offset frame


def test_flat_intensity_costs_more_than_the_prototype_itself():
  # The rank terms cannot tell these apart (same order); the scale term can.
  mean, _ = losses.intensity_prototype(9, 4)
  flat_but_ordered = 0.6 + 0.1 * mean
  assert float(scale.scale_loss(mean[None], mean[None])[0]) == 0.0
  assert float(scale.scale_loss(flat_but_ordered[None], mean[None])[0]) > 0.05


def test_bad_shapes_and_frames_are_refused():
  with pytest.raises(ValueError, match="batch, time"):
    scale.scale_loss(jnp.zeros((2, 3)), jnp.zeros((2, 4)))
  with pytest.raises(ValueError, match="from_frame"):
    scale.scale_loss(jnp.zeros((2, 3)), jnp.zeros((2, 3)), from_frame=3)


def test_registered_off_by_default_with_its_option():
  assert "scale" in losses.TERMS
  term = losses.TERMS["scale"]
  assert term.coefficient == 0.0 and term.coefficient_key == "lambda_scale"
  assert term.options["scale_from_frame"].default == 1
