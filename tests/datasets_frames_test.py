"""Anchored temporal sampling and clip decoding, against NumPy float64 and PIL references."""
import numpy as np
import pytest
from PIL import Image

from cmnet_jax import datasets
from cmnet_jax.testing import fake_trees
from cmnet_jax.datasets import frames


def reference_positions(n, p, t):
  """Onset, evenly spaced to the apex, apex at t // 2, evenly spaced to the offset (float64)."""
  a = t // 2
  rise = np.linspace(0.0, p, a + 1)
  fall = np.linspace(p, n - 1.0, t - a)
  return np.floor(np.concatenate([rise, fall[1:]]) + 0.5).astype(int)


@pytest.mark.parametrize("n,p,t", [(41, 20, 9), (41, 5, 9), (30, 0, 9), (30, 29, 9), (5, 2, 9),
                                   (1, 0, 9), (100, 37, 16), (12, 4, 3)])
def test_deterministic_positions(n, p, t):
  positions, apex = datasets.sample_frame_indices(n, p, t)
  np.testing.assert_array_equal(positions, reference_positions(n, p, t))
  assert apex == t // 2 and positions[apex] == p
  assert positions[0] == 0 and positions[-1] == n - 1
  assert np.all(np.diff(positions) >= 0)


def test_nine_frames_have_three_between_anchors():
  positions, apex = datasets.sample_frame_indices(81, 40, 9)
  assert apex == 4 and list(positions) == [0, 10, 20, 30, 40, 50, 60, 70, 80]


def test_jitter_stays_between_anchors_and_varies():
  rng = np.random.default_rng(0)
  draws = np.stack([datasets.sample_frame_indices(60, 20, 9, rng=rng)[0] for _ in range(200)])
  assert np.all(draws[:, [0, 4, 8]] == [0, 20, 59])
  assert np.all(np.diff(draws, axis=1) >= 0)
  assert np.all((draws[:, 1:4] >= 0) & (draws[:, 1:4] <= 20))
  assert np.all((draws[:, 5:8] >= 20) & (draws[:, 5:8] <= 59))
  assert len({tuple(d) for d in draws}) > 50
  spacing = 5.0  # rising segment: positions 5, 10, 15 move by at most half a spacing
  assert np.all(np.abs(draws[:, 1:4] - [5, 10, 15]) <= spacing / 2 + 0.5)
  again = datasets.sample_frame_indices(60, 20, 9, rng=np.random.default_rng(0))[0]
  np.testing.assert_array_equal(again, draws[0])


def test_bad_arguments():
  with pytest.raises(ValueError, match="apex_offset 5 outside"):
    datasets.sample_frame_indices(5, 5, 9)
  with pytest.raises(ValueError, match="num_available >= 1"):
    datasets.sample_frame_indices(0, 0, 9)


def make_record(tmp_path, numbers, *, suffix="jpg", grey=False, apex=None):
  paths = fake_trees.write_frames(tmp_path, numbers, "img{}." + suffix, size=(12, 10), grey=grey)
  apex = numbers[len(numbers) // 2] if apex is None else apex
  return datasets.ClipRecord("casme2", "sub01", "EP01", tuple(paths), numbers[0], apex,
                             numbers[-1], "happiness", 0, "12", tuple(numbers))


def test_load_clip_order_size_and_grey(tmp_path):
  record = make_record(tmp_path, list(range(46, 66)), suffix="bmp", grey=True, apex=50)
  clip, apex = datasets.load_clip(record, num_frames=9, image_size=8)
  assert clip.shape == (9, 8, 8, 3) and clip.dtype == np.uint8 and apex == 4
  positions, _ = datasets.sample_frame_indices(20, 4, 9)
  for t, pos in enumerate(positions):
    ref = Image.open(record.frame_paths[pos]).convert("RGB").resize((8, 8), Image.BILINEAR)
    np.testing.assert_array_equal(clip[t], np.asarray(ref))
    assert clip[t, 0, 0, 0] == fake_trees.frame_value(46 + pos)


def test_load_clip_short_jpeg_clip_repeats_frames(tmp_path):
  record = make_record(tmp_path, [7, 8, 9])
  clip, apex = datasets.load_clip(record, num_frames=9, image_size=12,
                                  rng=np.random.default_rng(1))
  levels = clip[:, 5, 5, 0].astype(int)
  assert clip.shape == (9, 12, 12, 3) and apex == 4
  assert abs(levels[0] - fake_trees.frame_value(7)) <= 2
  assert abs(levels[4] - fake_trees.frame_value(8)) <= 2
  assert abs(levels[-1] - fake_trees.frame_value(9)) <= 2


def test_read_frames_takes_given_positions(tmp_path):
  record = make_record(tmp_path, [3, 4, 5, 6], suffix="bmp")
  clip = frames.read_frames(record, np.array([3, 0, 0]), image_size=10)
  assert list(clip[:, 0, 0, 0]) == [fake_trees.frame_value(n) for n in (6, 3, 3)]
  with pytest.raises(datasets.DatasetError, match=r"positions \[4\] outside its 4 frames"):
    frames.read_frames(record, np.array([4]), image_size=10)


def test_missing_and_corrupt_frames(tmp_path):
  record = make_record(tmp_path, [1, 2, 3])
  with open(record.frame_paths[1], "wb") as f:
    f.write(b"\xff\xd8 truncated")
  with pytest.raises(datasets.DatasetError, match=r"sub01/EP01: corrupt or unreadable .*img2.jpg"):
    datasets.load_clip(record, num_frames=3, image_size=4)
  (tmp_path / "img2.jpg").unlink()
  with pytest.raises(datasets.DatasetError, match=r"frame file .*img2.jpg' does not exist"):
    datasets.load_clip(record, num_frames=3, image_size=4)


def test_frame_numbers_ignore_padding(tmp_path):
  fake_trees.write_frames(tmp_path, [9, 10, 100], "006_{:05d}.jpg")
  fake_trees.write_frames(tmp_path, [8], "006_{:04d}.jpg")
  (tmp_path / "Thumbs.db").write_bytes(b"")
  assert [n for n, _ in frames.list_frames(str(tmp_path))] == [8, 9, 10, 100]


def test_uniform_sampling_ignores_the_apex_and_reports_the_nearest_index():
  for n, p in ((41, 12), (30, 0), (30, 29), (9, 4), (5, 3)):
    positions, apex = datasets.sample_frame_indices(n, p, 9, mode="uniform")
    expected = np.floor(np.linspace(0, n - 1, 9) + 0.5).astype(int)
    np.testing.assert_array_equal(positions, expected)
    assert apex == int(np.argmin(np.abs(expected - p)))
  rng = np.random.default_rng(0)
  draws = [datasets.sample_frame_indices(60, 20, 9, rng=rng, mode="uniform") for _ in range(100)]
  spacing = 59 / 8
  for positions, apex in draws:
    assert positions[0] == 0 and positions[-1] == 59 and np.all(np.diff(positions) >= 0)
    assert np.all(np.abs(positions - np.linspace(0, 59, 9)) <= spacing / 2 + 0.5)
    assert apex == int(np.argmin(np.abs(positions.astype(int) - 20)))
  assert len({apex for _, apex in draws}) > 1           # the apex index moves with the jitter
  with pytest.raises(ValueError, match="sampling mode"):
    datasets.sample_frame_indices(60, 20, 9, mode="random")
