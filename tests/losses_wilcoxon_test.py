"""Tests of wilcoxon_loss against scipy.stats.ranksums, with masks, segments and transforms."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy import stats

from cmnet_jax.losses import wilcoxon_loss

MARGIN = 0.3


def _data(batch=4, num_frames=10, draws=2, seed=0):
  """Intensities and prototype-like draws (rise to 1 at the apex, fall after), in NumPy."""
  rng = np.random.default_rng(seed)
  apex = rng.integers(0, num_frames, size=batch)
  t = np.arange(num_frames)
  means = np.where(t <= apex[:, None], (t + 1) / (apex[:, None] + 1),
                   (num_frames - t) / (num_frames - apex[:, None]))
  samples = means[:, None] + 0.05 * rng.normal(size=(batch, draws, num_frames))
  intensities = rng.normal(size=(batch, num_frames)) * 0.3 + means
  intensities[0] += 2.0  # one clip clearly off the prototype
  return intensities.astype(np.float32), samples.astype(np.float32), apex


def _reference(s, v, apex, segments, valid=None):
  """max(0, m - p) with p from scipy.stats.ranksums, per clip, from the definition."""
  out = []
  for b in range(s.shape[0]):
    keep = np.ones(s.shape[1], bool) if valid is None else valid[b]
    if segments == "whole":
      parts = [keep]
    else:
      t = np.arange(s.shape[1])
      parts = [keep & (t <= apex[b]), keep & (t >= apex[b])]
    losses = [max(0.0, MARGIN - stats.ranksums(s[b][m].astype(np.float64),
                                               v[b][:, m].ravel().astype(np.float64)).pvalue)
              for m in parts]
    out.append(np.mean(losses))
  return np.array(out)


@pytest.mark.parametrize("segments", ["whole", "split"])
def test_exact_loss_matches_scipy(segments):
  s, v, apex = _data()
  got = wilcoxon_loss(s, v, margin=MARGIN, temperature=0., segments=segments, apex_index=apex)
  np.testing.assert_allclose(got, _reference(s, v, apex, segments), rtol=1e-5, atol=1e-6)
  assert got[0] > 0.25  # the shifted clip is penalised


def test_single_draw_per_vacancy_and_small_temperature():
  s, v, apex = _data(draws=1)
  got = wilcoxon_loss(s, v[:, 0], margin=MARGIN, temperature=1e-5)
  np.testing.assert_allclose(got, _reference(s, v, apex, "whole"), atol=1e-4)


def test_masked_frames_equal_slicing_and_batch_equals_loop():
  s, v, apex = _data()
  lengths = np.array([10, 7, 4, 10])
  valid = np.arange(10)[None] < lengths[:, None]
  apex = np.minimum(apex, lengths - 1)
  junk = np.where(valid, s, 1e3).astype(np.float32)
  kwargs = dict(margin=MARGIN, temperature=0.2, segments="split")
  batched = wilcoxon_loss(junk, v, apex_index=apex, where=valid, **kwargs)
  for b in (1, 2):  # clips with padding, computed alone on their valid frames
    n = lengths[b]
    alone = wilcoxon_loss(s[b:b + 1, :n], v[b:b + 1, :, :n], apex_index=apex[b], **kwargs)
    np.testing.assert_allclose(batched[b], alone[0], rtol=1e-5, atol=1e-6)
  exact = wilcoxon_loss(junk, v, margin=MARGIN, temperature=0., segments="split",
                        apex_index=apex, where=valid)
  np.testing.assert_allclose(exact, _reference(s, v, apex, "split", valid), rtol=1e-5, atol=1e-6)


def test_jit_vmap_and_gradients():
  s, v, apex = _data()
  f = lambda a, b, c: wilcoxon_loss(a, b, margin=MARGIN, temperature=0.3, segments="split",
                                    apex_index=c)
  eager = f(s, v, apex)
  np.testing.assert_allclose(jax.jit(f)(s, v, apex), eager, rtol=1e-6)
  chunked = wilcoxon_loss(s, v, margin=MARGIN, temperature=0.3, segments="split",
                          apex_index=apex, chunk_size=3)
  np.testing.assert_allclose(chunked, eager, rtol=1e-5, atol=1e-7)
  stacked = jax.vmap(f)(jnp.stack([s, s + 1]), jnp.stack([v, v]), jnp.stack([apex, apex]))
  np.testing.assert_allclose(stacked[0], eager, rtol=1e-6)
  np.testing.assert_allclose(stacked[1], f(s + 1, v, apex), rtol=1e-6)
  # float32 central differences (eps 1e-2) on the shapes compiled above; margin 1 keeps the
  # hinge active.
  g = lambda a: wilcoxon_loss(a, v, margin=1.0, temperature=0.3, segments="split",
                              apex_index=apex).sum()
  check_grads(g, (s,), order=1, modes=["rev"], eps=1e-2, atol=1e-2, rtol=1e-2)
  grad = jax.grad(lambda a: f(a, v, apex).sum())(np.zeros_like(s))  # every value tied
  assert np.isfinite(grad).all()


def test_bad_input_raises():
  s, v, _ = _data()
  with pytest.raises(ValueError, match="needs apex_index"):
    wilcoxon_loss(s, v, temperature=0.1, segments="split")
  with pytest.raises(ValueError, match="prototype_samples"):
    wilcoxon_loss(s, v[:, :, :4], temperature=0.1)
  with pytest.raises(ValueError, match="segments"):
    wilcoxon_loss(s, v, temperature=0.1, segments="rising")
  with pytest.raises(ValueError, match="where"):
    wilcoxon_loss(s, v, temperature=0.1, where=np.ones((5, 3), bool))


def _z_reference(s, v):
  """max(0, |z| - z_crit(MARGIN)) with z from scipy.stats.ranksums, per clip."""
  z_crit = stats.norm.isf(MARGIN / 2)
  return np.array([max(0.0, abs(stats.ranksums(s[b].astype(np.float64),
                                              v[b].ravel().astype(np.float64)).statistic) - z_crit)
                   for b in range(s.shape[0])])


def test_z_hinge_matches_scipy_and_is_active_on_the_same_clips():
  s, v, apex = _data(batch=6)
  z = wilcoxon_loss(s, v, margin=MARGIN, temperature=0., penalty="z_hinge")
  p = wilcoxon_loss(s, v, margin=MARGIN, temperature=0., penalty="p_hinge")
  np.testing.assert_allclose(z, _z_reference(s, v), rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(np.asarray(z) > 0, np.asarray(p) > 0)
  assert (np.asarray(z) > 0).any() and (np.asarray(z) == 0).any()


def _prototype_clip(num_frames=9):
  mean = np.r_[np.linspace(0.1, 1, 5), np.linspace(1, 0.1, 5)[1:]].astype(np.float32)
  return mean[:num_frames]


def test_paper_hinge_is_capped_and_blind_to_frame_order():
  """What the paper's p-hinge cannot do, measured (docs/method.md): T = 9 against 9 draws."""
  mean = _prototype_clip()
  draws = mean[None, None]                                   # one draw per vacancy = the mean
  saturated = np.full((1, 9), 1e-3, np.float32)               # every s_t below every draw
  loss = wilcoxon_loss(saturated, draws, margin=0.05, temperature=0.)
  assert 0.049 < float(loss[0]) <= 0.0497                      # |z| = 3.58: the largest value
  # Any permutation of the prototype, the inverted curve, a constant 0.5 and a shifted curve:
  # zero loss, zero gradient, in both segment modes.
  rng = np.random.default_rng(0)
  candidates = [mean[rng.permutation(9)], 1.1 - mean, np.full(9, 0.5), mean - 0.3]
  apex = np.array([4])
  for s in candidates:
    s = s[None].astype(np.float32)
    for segments in ("whole", "split"):
      f = lambda a: wilcoxon_loss(a, draws, margin=0.05, temperature=0.1, segments=segments,
                                  apex_index=apex).sum()
      assert float(f(s)) == 0.0
      assert not np.asarray(jax.grad(f)(s)).any()


def test_z_hinge_keeps_a_gradient_where_the_test_rejects():
  mean = _prototype_clip()
  draws = mean[None, None]
  low = np.full((1, 9), 1e-3, np.float32) + np.linspace(0, 1e-3, 9, dtype=np.float32)
  f = lambda a, penalty: wilcoxon_loss(a, draws, margin=0.05, temperature=0.1,
                                       penalty=penalty).sum()
  z_loss, z_grad = jax.value_and_grad(f)(low, "z_hinge")
  p_loss, p_grad = jax.value_and_grad(f)(low, "p_hinge")
  assert float(z_loss) > 1.0 and float(p_loss) < 0.05
  # Raising s reduces both; the z-hinge's pull is orders of magnitude stronger.
  assert (np.asarray(z_grad) < 0).all()
  assert np.abs(z_grad).sum() > 100 * np.abs(p_grad).sum()
  with pytest.raises(ValueError, match="penalty"):
    wilcoxon_loss(low, draws, temperature=0.1, penalty="log_p")
