"""Tests of negative sampling (counts, frequencies) and the ID loss (vs float64 NumPy)."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from cmnet_jax.losses import intensity_distillation_loss
from cmnet_jax.losses import sample_negatives

NUM_DRAWS = 20000


@pytest.mark.parametrize("strategy", ["all", "uniform", "difference"])
def test_counts_never_the_anchor(strategy):
  d = np.random.default_rng(0).uniform(size=(2, 9, 9)).astype(np.float32)  # doctest's shape
  mask = np.asarray(sample_negatives(jax.random.key(1), d, strategy=strategy, num_negatives=4))
  assert mask.shape == (2, 9, 9) and mask.dtype == bool
  assert not mask[:, np.arange(9), np.arange(9)].any()
  np.testing.assert_array_equal(mask.sum(-1), 8 if strategy == "all" else 4)
  few = sample_negatives(jax.random.key(1), d[:, :4, :4], strategy=strategy, num_negatives=4)
  np.testing.assert_array_equal(few, np.broadcast_to(~np.eye(4, dtype=bool), (2, 4, 4)))


def _plackett_luce_inclusion(probabilities, k):
  """P(j among k draws without replacement, each draw prop. to probabilities): enumeration."""
  n = len(probabilities)
  inclusion = np.zeros(n)
  for order in itertools.permutations(range(n), k):
    left, chance = 1.0, 1.0
    for j in order:
      chance *= probabilities[j] / left
      left -= probabilities[j]
    inclusion[list(order)] += chance
  return inclusion


@pytest.mark.parametrize("k", [1, 3])
def test_difference_frequencies_match_softmax(k):
  num_frames, temperature = 6, 0.5
  d = np.random.default_rng(0).uniform(0, 2, size=(num_frames, num_frames)).astype(np.float32)
  masks = sample_negatives(jax.random.key(k), np.broadcast_to(d, (NUM_DRAWS,) + d.shape),
                           strategy="difference", num_negatives=k, temperature=temperature)
  frequency = np.asarray(masks).mean(0)
  for i in range(num_frames):
    others = [j for j in range(num_frames) if j != i]
    logits = d[i, others].astype(np.float64) / temperature
    softmax = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    expected = _plackett_luce_inclusion(softmax, k)
    # Tolerance: 5 binomial standard errors per entry.
    bound = 5 * np.sqrt(expected * (1 - expected) / NUM_DRAWS)
    np.testing.assert_array_less(np.abs(frequency[i, others] - expected), bound)


def test_normalized_difference_sampling_is_scale_free():
  """Micro-expression frame differences are ~0.005: un-normalised, the draw is uniform."""
  num_frames, temperature, k = 6, 0.5, 1
  d = np.random.default_rng(1).uniform(0, 2, size=(num_frames, num_frames)).astype(np.float32)
  d = (d + d.T) * (1 - np.eye(num_frames, dtype=np.float32))
  tiny = np.broadcast_to(0.005 * d, (NUM_DRAWS,) + d.shape)
  masks = sample_negatives(jax.random.key(5), tiny, strategy="difference", num_negatives=k,
                           temperature=temperature, normalize=True)
  frequency = np.asarray(masks).mean(0)
  scaled = d / (d.sum() / (num_frames * (num_frames - 1)))     # NumPy float64 normalisation
  for i in range(num_frames):
    others = [j for j in range(num_frames) if j != i]
    logits = scaled[i, others].astype(np.float64) / temperature
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    bound = 5 * np.sqrt(expected * (1 - expected) / NUM_DRAWS)
    np.testing.assert_array_less(np.abs(frequency[i, others] - expected), bound)
  same = sample_negatives(jax.random.key(5), 1000 * tiny, strategy="difference",
                          num_negatives=k, temperature=temperature, normalize=True)
  np.testing.assert_array_equal(masks, same)
  raw = np.asarray(sample_negatives(jax.random.key(5), tiny, strategy="difference",
                                    num_negatives=k, temperature=temperature)).mean(0)
  assert np.abs(raw[~np.eye(num_frames, dtype=bool)] - 1 / (num_frames - 1)).max() < 0.03


def test_uniform_frequencies_and_jit_equals_eager():
  d = np.zeros((NUM_DRAWS, 6, 6), np.float32)
  frequency = np.asarray(sample_negatives(jax.random.key(2), d, strategy="uniform",
                                          num_negatives=3)).mean(0)
  off = ~np.eye(6, dtype=bool)
  expected = 3 / 5  # tolerance: 5 binomial standard errors
  np.testing.assert_array_less(np.abs(frequency[off] - expected),
                               5 * np.sqrt(expected * (1 - expected) / NUM_DRAWS))
  f = lambda key, x: sample_negatives(key, x, strategy="difference", num_negatives=4)
  x = np.random.default_rng(1).uniform(size=(2, 9, 9)).astype(np.float32)
  np.testing.assert_array_equal(jax.jit(f)(jax.random.key(3), x), f(jax.random.key(3), x))


def _reference_loss(anchors, positives, frames, mask, temperature, valid):
  """float64 NumPy InfoNCE written from the formula, one anchor at a time."""
  unit = lambda v: v / max(np.linalg.norm(v), 1e-8)
  out = []
  for b in range(anchors.shape[0]):
    losses = []
    for n in range(anchors.shape[1]):
      if not valid[b, n]:
        continue
      z = unit(anchors[b, n])
      positive = np.exp(z @ unit(positives[b, n]) / temperature)
      negatives = sum(np.exp(z @ unit(frames[b, k]) / temperature)
                      for k in range(anchors.shape[1]) if mask[b, n, k] and valid[b, k] and k != n)
      losses.append(-np.log(positive / (positive + negatives)))
    out.append(np.mean(losses) if losses else 0.0)
  return np.array(out)


def _id_data(batch=3, num_frames=6, dim=5, seed=0):
  rng = np.random.default_rng(seed)
  anchors = rng.normal(size=(batch, num_frames, dim))
  positives = anchors + 0.3 * rng.normal(size=anchors.shape)
  frames = rng.normal(size=anchors.shape)
  mask = rng.random((batch, num_frames, num_frames)) < 0.5
  valid = rng.random((batch, num_frames)) < 0.8
  return anchors, positives, frames, mask, valid


def test_id_loss_matches_float64_reference():
  anchors, positives, frames, mask, valid = _id_data()
  valid[2] = False  # a clip without a valid frame has loss 0
  mask[0, 1, 1] = True  # the diagonal is ignored
  for where in (None, valid):
    got = intensity_distillation_loss(*(v.astype(np.float32) for v in (anchors, positives, frames)),
                                      mask, temperature=0.2, where=where)
    ref = _reference_loss(anchors, positives, frames, mask, 0.2,
                          np.ones_like(valid) if where is None else valid)
    np.testing.assert_allclose(got, ref, rtol=2e-5, atol=2e-5)


def test_id_masks_equal_slicing_jit_vmap_and_gradients():
  anchors, positives, frames, mask, _ = (v.astype(np.float32) if v.dtype == float else v
                                         for v in _id_data(batch=2, num_frames=8))
  valid = np.arange(8)[None] < np.array([[8], [5]])
  f = lambda a, p, fr, m, w=None: intensity_distillation_loss(a, p, fr, m, where=w)
  full = f(anchors, positives, frames, mask, valid)
  sliced = f(anchors[1:, :5], positives[1:, :5], frames[1:, :5], mask[1:, :5, :5])
  np.testing.assert_allclose(full[1], sliced[0], rtol=1e-6)
  np.testing.assert_allclose(jax.jit(f)(anchors, positives, frames, mask, valid), full, rtol=1e-6)
  stacked = jax.vmap(f)(*(np.stack([v, v]) for v in (anchors, positives, frames, mask, valid)))
  np.testing.assert_allclose(stacked[1], full, rtol=1e-6)
  # float32 central differences (eps 1e-2) on the shapes compiled above.
  g = lambda a, p: intensity_distillation_loss(a, p, a, mask, temperature=0.5, where=valid).sum()
  check_grads(g, (anchors, positives), order=1, modes=["rev"], eps=1e-2, atol=1e-2, rtol=1e-2)
  zero = np.zeros_like(anchors)  # zero-norm embeddings: the norm floor keeps gradients finite
  assert all(np.isfinite(g_).all() for g_ in jax.grad(g, argnums=(0, 1))(zero, zero))


def test_bad_input_raises():
  anchors, positives, frames, mask, _ = _id_data()
  with pytest.raises(ValueError, match="negative_mask"):
    intensity_distillation_loss(anchors, positives, frames, mask[:, :3])
  with pytest.raises(ValueError, match="positives"):
    intensity_distillation_loss(anchors, positives[:, :3], frames, mask)
  with pytest.raises(ValueError, match="strategy"):
    sample_negatives(jax.random.key(0), mask, strategy="hard")
  with pytest.raises(ValueError, match=r"\[\.\.\., T, T\]"):
    sample_negatives(jax.random.key(0), mask[..., :3])
