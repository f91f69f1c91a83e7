"""Position-controlled intensity diagnostics (issue 22) against independent references:
scipy's Spearman, and an ordinary least-squares fit (scikit-learn) on the one-hot position."""
import numpy as np
import pytest
from scipy import stats
from sklearn.linear_model import LinearRegression

from cmnet_jax import reports
from cmnet_jax.reports import intensity as intensity_lib


def _tent(t, apex):
  return np.maximum(0.0, 1.0 - np.abs(np.arange(t) - apex) / 3.0)


def _partial_r_reference(a, b):
  """Rank over all values (scipy), regress each on the one-hot position (sklearn OLS), correlate
  the residuals (scipy Pearson)."""
  n, t = a.shape
  onehot = np.tile(np.eye(t), (n, 1))
  res = []
  for x in (a, b):
    r = stats.rankdata(x.ravel())
    res.append(r - LinearRegression().fit(onehot, r).predict(onehot))
  return stats.pearsonr(*res)[0]


def test_partial_r_matches_ranks_regressed_on_one_hot_position():
  rs = np.random.RandomState(0)
  true = np.stack([_tent(9, a) for a in rs.randint(1, 8, 40)]) + 0.01 * rs.rand(40, 9)
  learned = 0.5 * true + 0.3 * rs.rand(40, 9) + 0.2 * np.arange(9) / 9
  assert intensity_lib.partial_r_given_position(learned, true) == pytest.approx(
      _partial_r_reference(learned, true), abs=1e-9)


def test_a_clock_scores_the_position_template_but_no_partial_r():
  # Every clip's apex at index 4 (anchored sampling): a fixed tent follows every clip's truth.
  rs = np.random.RandomState(1)
  n, t = 30, 9
  true = np.stack([_tent(t, 4) ** rs.uniform(0.6, 1.6) for _ in range(n)])
  clock = np.tile(_tent(t, 4), (n, 1)) + 1e-3 * rs.rand(n, t)   # knows only the position
  d = reports.position_diagnostics(clock, groups=np.arange(n) % 5, apex=np.full(n, 4),
                                   motion=rs.rand(n, t), true_intensity=true)
  assert d["learned_spearman_per_clip"] > 0.9
  assert d["position_baseline_spearman_per_clip"] > 0.9        # the template does as well
  assert d["shuffled_spearman_per_clip"] > 0.9                  # so does another clip's s
  assert abs(d["partial_r_given_position"]) < 0.3
  assert d["true_variance_explained_by_position"] > 0.9


def test_an_intensity_that_follows_a_moving_apex_beats_every_control():
  rs = np.random.RandomState(2)
  n, t = 60, 9
  apex = rs.randint(1, 8, n)
  true = np.stack([_tent(t, a) for a in apex])
  learned = true + 0.05 * rs.rand(n, t)
  motion = rs.rand(n, t)          # a difference image that does not see the expression
  d = reports.position_diagnostics(learned, groups=np.arange(n) % 6, apex=apex, motion=motion,
                                   true_intensity=true)
  assert d["partial_r_given_position"] > 0.7
  assert d["apex_hit_fraction"] == 1.0
  assert d["learned_spearman_per_clip"] > d["position_baseline_spearman_per_clip"] + 0.3
  assert d["learned_spearman_per_clip"] > d["shuffled_spearman_per_clip"] + 0.3
  assert d["apex_hit_fraction_difference_baseline"] < 0.7


def test_per_clip_scores_match_scipy_with_the_onset_frame_left_out():
  rs = np.random.RandomState(3)
  n, t = 12, 9
  learned, true = rs.rand(n, t), rs.rand(n, t)
  groups = np.arange(n) % 3
  d = reports.position_diagnostics(learned, groups=groups, apex=np.full(n, 4),
                                   motion=rs.rand(n, t), true_intensity=true)
  own = [stats.spearmanr(learned[i, 1:], true[i, 1:])[0] for i in range(n)]
  shuffled = [stats.spearmanr(learned[j, 1:], true[i, 1:])[0]
              for i in range(n) for j in range(n) if i != j]
  templates = [learned[groups != groups[i]].mean(0) for i in range(n)]
  position = [stats.spearmanr(templates[i][1:], true[i, 1:])[0] for i in range(n)]
  assert d["scored_from_index"] == 1.0
  assert d["learned_spearman_per_clip"] == pytest.approx(np.mean(own), abs=1e-12)
  assert d["shuffled_spearman_per_clip"] == pytest.approx(np.mean(shuffled), abs=1e-12)
  assert d["position_baseline_spearman_per_clip"] == pytest.approx(np.mean(position), abs=1e-12)
  # With the onset included the scores move (the onset is a real frame there).
  all_frames = reports.position_diagnostics(learned, groups=groups, apex=np.full(n, 4),
                                            motion=rs.rand(n, t), true_intensity=true,
                                            exclude_onset=False)
  assert all_frames["scored_from_index"] == 0.0
  assert all_frames["learned_spearman_per_clip"] == pytest.approx(np.mean(
      [stats.spearmanr(learned[i], true[i])[0] for i in range(n)]), abs=1e-12)


def test_apex_hits_count_within_one_frame_and_never_the_onset():
  s = np.array([[0.9, 0.1, 0.5, 0.2, 0.0],     # argmax past the onset: 2 (apex 3: hit)
                [0.0, 0.1, 0.2, 0.3, 0.9],     # 4 vs apex 1: miss
                [0.0, 0.8, 0.2, 0.3, 0.1]])    # 1 vs apex 2: hit
  motion = np.array([[0, 0, 0, 1, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 1.0]])
  d = reports.position_diagnostics(s, groups=[0, 1, 2], apex=[3, 1, 2], motion=motion)
  assert d["apex_hit_fraction"] == pytest.approx(2 / 3)
  assert d["apex_hit_fraction_difference_baseline"] == pytest.approx(1 / 3)  # 3, 4, 4: one hit
  assert "partial_r_given_position" not in d    # real data: no true intensity
  line = reports.format_position_diagnostics(d)
  assert "onset frame excluded" in line and "apex within 1 frame: learned 67%" in line


def test_motion_energy_is_the_mean_absolute_difference_from_the_onset_frame():
  rs = np.random.RandomState(4)
  frames = rs.randint(0, 256, (2, 4, 5, 5, 3)).astype(np.uint8)
  ref = np.abs(frames.astype(np.float64) - frames[:, :1]).mean((2, 3, 4))
  np.testing.assert_allclose(reports.motion_energy(frames), ref, rtol=1e-6)
