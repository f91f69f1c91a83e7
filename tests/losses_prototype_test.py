"""Tests of the intensity prototype (means, 3-sigma ranges, traced apex) and its sampler."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cmnet_jax.losses import intensity_prototype
from cmnet_jax.losses import sample_prototype


def _reference(num_frames, apex, epsilon, floor):
  """float64 NumPy prototype written from docs/method.md."""
  mean = np.empty(num_frames)
  for t in range(num_frames):
    if t == apex:
      mean[t] = 1.0
    elif t < apex:
      mean[t] = epsilon + (1 - epsilon) * t / apex
    else:
      mean[t] = epsilon + (1 - epsilon) * (num_frames - 1 - t) / (num_frames - 1 - apex)
  std = np.empty(num_frames)
  for t in range(num_frames):
    gaps = [abs(mean[t] - mean[s]) for s in (t - 1, t + 1) if 0 <= s < num_frames]
    std[t] = max(min(gaps) / 6, floor) if gaps else floor
  return mean, std


@pytest.mark.parametrize("num_frames", [1, 2, 9, 16])
def test_means_and_stds_match_reference_for_every_apex(num_frames):
  apexes = jnp.arange(num_frames)
  means, stds = jax.jit(jax.vmap(
      lambda a: intensity_prototype(num_frames, a, epsilon=0.2, sigma_floor=1e-3)))(apexes)
  for a in range(num_frames):
    mean, std = _reference(num_frames, a, 0.2, 1e-3)
    np.testing.assert_allclose(means[a], mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(stds[a], std, rtol=1e-5, atol=1e-7)
    eager_mean, _ = intensity_prototype(num_frames, a, epsilon=0.2, sigma_floor=1e-3)
    np.testing.assert_array_equal(eager_mean, means[a])


def test_stated_means_monotone_segments_and_disjoint_three_sigma_ranges():
  for apex in range(9):
    mean, std = map(np.asarray, intensity_prototype(9, apex, epsilon=0.1, sigma_floor=1e-3))
    assert mean[apex] == 1.0
    if apex > 0:
      assert abs(mean[0] - 0.1) < 1e-7
      assert (np.diff(mean[:apex + 1]) > 0).all()
    if apex < 8:
      assert abs(mean[-1] - 0.1) < 1e-7
      assert (np.diff(mean[apex:]) < 0).all()
    low, high = mean - 3 * std, mean + 3 * std
    for t in range(8):
      upper, lower = (t, t + 1) if mean[t] > mean[t + 1] else (t + 1, t)
      assert low[upper] >= high[lower] - 1e-6, (apex, t)


def test_floor_wins_when_gaps_are_small():
  _, std = intensity_prototype(1024, 100, sigma_floor=0.01)
  assert float(std.min()) == pytest.approx(0.01)


def test_sample_moments():
  mean, std = intensity_prototype(9, 3)
  draws = np.asarray(sample_prototype(jax.random.key(0), mean, std, (20000, 9)))
  n = draws.shape[0]
  # 5 standard errors of the sample mean and of the sample std (about std / sqrt(2 n)).
  np.testing.assert_array_less(np.abs(draws.mean(0) - mean), 5 * std / np.sqrt(n))
  np.testing.assert_array_less(np.abs(draws.std(0) - std), 5 * std / np.sqrt(2 * n))
  inside = np.abs(draws - mean) <= 3 * std
  assert abs(inside.mean() - 0.9973) < 0.002


def test_sample_shapes_broadcast_and_errors():
  means, stds = jax.vmap(lambda a: intensity_prototype(9, a))(jnp.array([2, 4]))
  draws = sample_prototype(jax.random.key(1), means[:, None], stds[:, None], (2, 3, 9))
  assert draws.shape == (2, 3, 9)
  assert not np.allclose(draws[0, 0], draws[0, 1])
  with pytest.raises(ValueError, match="mean of shape"):
    sample_prototype(jax.random.key(1), means, stds, (2, 3, 9))
  with pytest.raises(ValueError, match="num_frames"):
    intensity_prototype(0, 0)
  with pytest.raises(ValueError, match="apex_index must be a scalar"):
    intensity_prototype(9, jnp.array([1, 2]))
