"""Tests of cmnet_jax.losses.ranking against scipy.stats (rankdata, ranksums, mannwhitneyu)."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy import stats

from cmnet_jax.losses import soft_rank
from cmnet_jax.losses import wilcoxon_rank_sum

PAD = 64
NUM_CASES = 48


def _cases(seed, ties):
  """Random (x, y) pairs, 1..64 per side, scales 1e-3..1e4, as float32 numpy arrays."""
  rng = np.random.default_rng(seed)
  cases = []
  for _ in range(NUM_CASES):
    n1, n2 = rng.integers(1, PAD + 1, size=2)
    scale = 10.0 ** rng.uniform(-3, 4)
    x = rng.normal(size=n1) + rng.uniform(-1, 1)
    y = rng.normal(size=n2)
    if ties:  # a coarse grid makes many ties inside and across the samples
      x, y = np.round(x * 2) / 2, np.round(y * 2) / 2
    cases.append(((x * scale).astype(np.float32), (y * scale).astype(np.float32)))
  return cases


def _padded(cases):
  """Stacks cases into [cases, PAD] arrays with masks; padding holds junk values."""
  xs = np.full((len(cases), PAD), 7e5, np.float32)
  ys = np.full((len(cases), PAD), -3e5, np.float32)
  xw = np.zeros((len(cases), PAD), bool)
  yw = np.zeros((len(cases), PAD), bool)
  for k, (x, y) in enumerate(cases):
    xs[k, :len(x)], xw[k, :len(x)] = x, True
    ys[k, :len(y)], yw[k, :len(y)] = y, True
  return xs, ys, xw, yw


@functools.partial(jax.jit, static_argnames="temperature")
def _batched(xs, ys, xw, yw, temperature):
  return jax.vmap(lambda x, y, a, b: wilcoxon_rank_sum(
      x, y, temperature=temperature, x_where=a, y_where=b))(xs, ys, xw, yw)


def _scipy(x, y):
  x64, y64 = x.astype(np.float64), y.astype(np.float64)
  rank_sum = stats.rankdata(np.concatenate([x64, y64]))[:len(x)].sum()
  result = stats.ranksums(x64, y64)
  return rank_sum, result.statistic, result.pvalue


def test_soft_rank_exact_equals_rankdata_with_ties():
  rng = np.random.default_rng(0)
  for n in (1, 2, 33):
    x = rng.integers(0, 5, size=n).astype(np.float32)
    np.testing.assert_array_equal(soft_rank(x, temperature=0.), stats.rankdata(x))


def _pairwise_ranks(u, valid):
  """The O(n^2) form the exact ranks replaced: 1/2 + sum_{j valid} step(u_i - u_j), 0 if invalid."""
  step = 0.5 * (1.0 + np.sign(u[:, None] - u[None, :]))
  return np.where(valid, 0.5 + np.where(valid[None, :], step, 0.0).sum(1), 0.0)


def test_exact_ranks_of_the_valid_entries_equal_scipy_and_the_pairwise_form():
  """`ranking.exact_ranks` (jax.scipy.stats.rankdata): the same values, bit for bit, as the
  pairwise sum it replaced, and as scipy's rankdata of the valid entries; NaN propagates."""
  from cmnet_jax.losses import ranking
  rng = np.random.default_rng(1)
  for n in (1, 2, 9, 40):
    u = rng.integers(0, 4, size=n).astype(np.float32) * np.float32(0.37)
    valid = rng.random(n) < 0.7
    got = np.asarray(jax.jit(ranking.exact_ranks)(u, valid))
    np.testing.assert_array_equal(got, _pairwise_ranks(u, valid).astype(np.float32))
    np.testing.assert_array_equal(got[valid], stats.rankdata(u[valid]))
    assert got.dtype == np.float32 and not got[~valid].any()
    np.testing.assert_array_equal(ranking.exact_ranks(u), stats.rankdata(u))
  u = np.array([1.0, np.nan, 2.0], np.float32)
  assert np.isnan(ranking.exact_ranks(u)).all()
  ranks = ranking.exact_ranks(u, np.array([True, False, True]))
  np.testing.assert_array_equal(ranks, [1.0, 0.0, 2.0])  # a NaN left out is not seen
  assert np.isnan(ranking.exact_ranks(u, np.array([True, True, False]))[:2]).all()


def test_soft_rank_converges_to_rankdata():
  x = np.random.default_rng(1).normal(size=40).astype(np.float32)
  errors = [np.abs(soft_rank(x, temperature=t) - stats.rankdata(x)).max()
            for t in (1.0, 0.1, 1e-2, 1e-5)]
  assert all(a > b for a, b in zip(errors, errors[1:])), errors
  assert errors[-1] < 1e-3
  np.testing.assert_allclose(soft_rank(x, temperature=0.3).sum(), 40 * 41 / 2, rtol=1e-6)


@pytest.mark.parametrize("ties", [False, True])
def test_exact_rank_sum_equals_scipy_ranksums(ties):
  cases = _cases(seed=int(ties), ties=ties)
  result = _batched(*_padded(cases), temperature=0.)
  for k, (x, y) in enumerate(cases):
    rank_sum, z, p = _scipy(x, y)
    assert float(result.statistic[k]) == rank_sum, (k, len(x), len(y))
    # z and p are computed in float32: equal to scipy's float64 up to float32 rounding.
    np.testing.assert_allclose(result.zscore[k], z, rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(result.pvalue[k], p, rtol=2e-5, atol=1e-7)


def test_mann_whitney_u_and_pvalue_without_ties():
  cases = _cases(seed=2, ties=False)
  result = _batched(*_padded(cases), temperature=0.)
  for k, (x, y) in enumerate(cases):
    ref = stats.mannwhitneyu(x.astype(np.float64), y.astype(np.float64),
                             method="asymptotic", use_continuity=False)
    assert float(result.statistic[k]) - len(x) * (len(x) + 1) / 2 == ref.statistic
    np.testing.assert_allclose(result.pvalue[k], ref.pvalue, rtol=2e-5, atol=1e-7)


def test_small_temperature_matches_scipy_and_error_shrinks():
  cases = _cases(seed=3, ties=False)
  padded = _padded(cases)
  reference = np.array([_scipy(x, y)[1] for x, y in cases])
  errors = {}
  for t in (1.0, 0.1, 1e-2, 1e-3, 1e-6):
    errors[t] = np.abs(np.asarray(_batched(*padded, temperature=t).zscore) - reference)
  assert errors[1e-6].max() < 1e-3, errors[1e-6].max()
  means = [errors[t].mean() for t in (1.0, 0.1, 1e-2, 1e-3)]
  assert all(a > b for a, b in zip(means, means[1:])), means


def test_temperature_is_scale_free_when_standardised():
  rng = np.random.default_rng(4)
  x, y = rng.normal(size=12).astype(np.float32), rng.normal(size=20).astype(np.float32)
  base = wilcoxon_rank_sum(x, y, temperature=0.2)
  for a, b in ((1e-3, 5.0), (1e4, -2e4)):
    moved = wilcoxon_rank_sum(a * x + b, a * y + b, temperature=0.2)
    np.testing.assert_allclose(moved.zscore, base.zscore, rtol=1e-4, atol=1e-4)
  raw = wilcoxon_rank_sum(x, y, temperature=0.2, standardize=False)
  scaled = wilcoxon_rank_sum(1e3 * x, 1e3 * y, temperature=200., standardize=False)
  np.testing.assert_allclose(scaled.statistic, raw.statistic, rtol=1e-5)
  assert abs(float(raw.statistic) - float(base.statistic)) > 1e-3  # std of pooled != 1


def test_masked_entries_equal_slicing_and_chunks_equal_pairwise():
  rng = np.random.default_rng(5)
  x, y = rng.normal(size=(2, 30)).astype(np.float32)
  xw, yw = np.arange(30) < 17, np.arange(30) < 25
  full = wilcoxon_rank_sum(x, y, temperature=0.1, x_where=xw, y_where=yw)
  sliced = wilcoxon_rank_sum(x[:17], y[:25], temperature=0.1)
  chunked = wilcoxon_rank_sum(x, y, temperature=0.1, x_where=xw, y_where=yw, chunk_size=7)
  for got in (sliced, chunked):
    np.testing.assert_allclose(np.array(got), np.array(full), rtol=1e-5, atol=1e-6)
  grad = lambda **kw: jax.grad(lambda a: wilcoxon_rank_sum(
      a, y, temperature=0.1, x_where=xw, y_where=yw, **kw).zscore)(x)
  np.testing.assert_allclose(grad(chunk_size=7), grad(), rtol=1e-5, atol=1e-7)


def test_jit_equals_eager_and_vmap_equals_loop():
  rng = np.random.default_rng(6)
  xs, ys = rng.normal(size=(3, 10)).astype(np.float32), rng.normal(size=(3, 14)).astype(np.float32)
  f = lambda x, y: wilcoxon_rank_sum(x, y, temperature=0.05)
  batched = jax.vmap(f)(xs, ys)
  jitted = jax.jit(f)(xs[0], ys[0])
  for k in range(3):
    eager = f(xs[k], ys[k])
    np.testing.assert_allclose(np.array([b[k] for b in batched]), np.array(eager), rtol=1e-6)
  np.testing.assert_allclose(np.array(jitted), np.array(f(xs[0], ys[0])), rtol=1e-6)
  np.testing.assert_allclose(jax.jit(functools.partial(soft_rank, temperature=0.))(xs[0]),
                             soft_rank(xs[0], temperature=0.))


def test_gradients_match_finite_differences_including_ties_and_zero_z():
  check_grads(lambda a: soft_rank(a, temperature=0.5), (np.linspace(0., 1., 33, dtype=np.float32),),
              order=1, modes=["rev"], eps=1e-2, atol=1e-2, rtol=1e-2)  # float32, shape reused
  with jax.enable_x64(True):
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=6), rng.normal(size=5)
    # the p-value is the end of the chain rank sum -> z -> p, so this checks all three.
    f = lambda a, b: wilcoxon_rank_sum(a, b, temperature=0.3).pvalue
    check_grads(f, (x, y), order=1, modes=["rev", "fwd"])
    tied = np.array([0.0, 0.0, 1.0, 1.0])
    symmetric = wilcoxon_rank_sum(tied, tied, temperature=0.3)
    assert float(symmetric.zscore) == 0.0 and float(symmetric.pvalue) == 1.0
    for a, b in ((tied, tied), (tied, np.array([0.0, 1.0, 1.0, 1.0]))):
      g = jax.grad(lambda u, v: wilcoxon_rank_sum(u, v, temperature=0.3).pvalue,
                   argnums=(0, 1))(a, b)
      assert all(np.isfinite(gi).all() for gi in g)
    assert np.isfinite(jax.grad(lambda a: soft_rank(a, temperature=0.1).sum())(tied)).all()


def test_extreme_z_in_float32_has_no_nan():
  x = jnp.linspace(100., 101., 200)  # z = sqrt(3 n1 n2 / (n1 + n2 + 1)) = 17.3
  y = jnp.linspace(0., 1., 200)
  result = wilcoxon_rank_sum(x, y, temperature=0.1)
  assert float(result.zscore) > 17 and float(result.pvalue) == 0.0
  assert np.isfinite(jax.grad(lambda a: wilcoxon_rank_sum(a, y, temperature=0.1).pvalue)(x)).all()


def test_empty_side_gives_p_one_and_bad_input_raises():
  x = jnp.arange(4.)
  result = wilcoxon_rank_sum(x, x, temperature=0.1, y_where=jnp.zeros(4, bool))
  assert float(result.zscore) == 0.0 and float(result.pvalue) == 1.0
  with pytest.raises(ValueError, match="x: expected shape"):
    wilcoxon_rank_sum(jnp.zeros((2, 3)), x, temperature=0.1)
  with pytest.raises(ValueError, match="temperature >= 0"):
    soft_rank(x, temperature=-1.)
  with pytest.raises(ValueError, match="y_where"):
    wilcoxon_rank_sum(x, x, temperature=0., y_where=jnp.ones(3, bool))
