"""Tests of the synthetic micro-expression generator (cmnet_jax.datasets.synthetic)."""
import filecmp
import os

import numpy as np
import openpyxl
import pytest
from PIL import Image
from sklearn.linear_model import RidgeClassifier

from cmnet_jax import datasets
from cmnet_jax.datasets import synthetic
from cmnet_jax.datasets.synthetic import expressions, faces, generator
from configs import common


def small_config(**overrides):
  c = common.synthetic_config()
  c.num_subjects, c.clips_per_class, c.image_size = 3, 1, 32
  c.min_frames, c.max_frames = 6, 10
  for key, value in overrides.items():
    c[key] = value
  return c


QUIET = dict(head_jitter_px=0.0, illumination_drift=0.0, noise_sigma=0.0, blink_probability=0.0)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
  return synthetic.generate(small_config(), tmp_path_factory.mktemp("syn") / "tree")


def _files(root):
  return sorted(os.path.relpath(os.path.join(d, f), root)
                for d, _, fs in os.walk(root) for f in fs)


def _sheet(root):
  rows = list(openpyxl.load_workbook(os.path.join(root, synthetic.CODING_FILE))["Sheet1"]
              .iter_rows(values_only=True))
  return rows[0], rows[1:]


def test_tree_layout_and_coding_sheet(tree):
  header, rows = _sheet(tree)
  assert header == ("Subject", "Filename", None, "OnsetFrame", "ApexFrame", "OffsetFrame", None,
                    "Action Units", "Estimated Emotion", "Objective Classes")
  assert len(rows) == 3 * 5
  assert {r[0] for r in rows} == {"01", "02", "03"}
  assert all(r[2] is None and r[6] is None for r in rows)
  assert sum(r[4] == "/" for r in rows) == 1
  assert sorted(r[8] for r in rows) == sorted(expressions.CLASS_NAMES * 3)
  for subject, name, _, onset, apex, offset, *_ in rows:
    folder = os.path.join(tree, "Cropped", f"sub{subject}", name)
    numbers = sorted(int(f[len("reg_img"):-4]) for f in os.listdir(folder))
    assert numbers == list(range(onset, offset + 1)) and onset > 1
    assert 6 <= len(numbers) <= 10
    assert apex == "/" or onset < apex < offset
  image = Image.open(os.path.join(folder, f"reg_img{onset}.jpg"))
  assert image.size == (32, 32) and image.mode == "RGB"


def test_reader_loads_tree_class_balanced(tree):
  index = datasets.load_index("casme2", tree)
  assert len(index.clips) == 15 and len(index.subjects) == 3
  for subject in index.subjects:
    emotions = sorted(c.emotion for c in index.clips if c.subject == subject)
    assert emotions == sorted(expressions.CLASS_NAMES)
  assert all(index.class_names[c.label] == c.emotion for c in index.clips)


def test_same_seed_same_bytes_other_seed_differs(tree, tmp_path):
  again = synthetic.generate(small_config(), tmp_path / "again")
  assert _files(again) == _files(tree)
  comparable = [f for f in _files(tree) if not f.endswith(".xlsx")]
  match, mismatch, errors = filecmp.cmpfiles(tree, again, comparable, shallow=False)
  assert not mismatch and not errors and len(match) == len(comparable)
  assert _sheet(again) == _sheet(tree)
  other = synthetic.generate(small_config(seed=1), tmp_path / "other")
  assert not filecmp.cmp(os.path.join(tree, synthetic.INTENSITY_FILE),
                         os.path.join(other, synthetic.INTENSITY_FILE), shallow=False)


def test_true_intensity_peaks_at_apex(tree):
  truth = synthetic.load_true_intensity(tree)
  _, rows = _sheet(tree)
  assert len(truth) == len(rows)
  for subject, name, _, onset, apex, offset, *_ in rows:
    levels = truth[(subject, name)]
    assert sorted(levels) == list(range(onset, offset + 1))
    peak = max(levels, key=levels.get)
    assert levels[onset] == 0.0 and levels[peak] == 1.0
    assert peak == (apex if apex != "/" else (onset + offset) // 2)
    assert all(0.0 <= v <= 1.0 for v in levels.values())


def test_labels_follow_au_patterns(tree):
  _, rows = _sheet(tree)
  for *_, code, emotion, objective in rows:
    aus = "+".join(str(a) for a in sorted(expressions.parse_action_units(str(code))))
    allowed = {"+".join(sorted(v.split("+"), key=int)) for v in expressions.CLASS_VARIANTS[emotion]}
    assert aus in allowed, (code, emotion)
    assert isinstance(objective, int)


def test_class_motion_sits_in_its_face_region():
  """Surprise (AU1+2) moves the brows only; repression (AU14/15/17) the mouth and chin only."""
  settings = generator.validate_settings(small_config(amplitude_px=2.0, image_size=48, **QUIET))
  plans = generator.plan_clips(settings)
  checks = (("surprise", lambda u: u > 0.95), ("repression", lambda u: u < 0.05))
  for emotion, upper_share in checks:
    for plan in [p for p in plans if p.expression.emotion == emotion]:
      identity = generator.identity_of(settings, plan.subject)
      onset, apex = generator.render_clip(identity, plan, settings,
                                          [0, plan.apex_index]).astype(float)
      energy = np.abs(apex - onset).sum(axis=(1, 2))
      nose_row = int(identity.nose[0] * 48)
      assert energy.sum() > 0 and upper_share(energy[:nose_row].sum() / energy.sum())


def test_displacement_field_matches_gaussian_formula():
  identity = faces.make_identity(np.random.default_rng(3))
  field = expressions.displacement_field(identity, {7: (1.0, 0.5)}, image_size=40, amplitude_px=1.3)
  g = (np.arange(40, dtype=np.float64) + 0.5) / 40
  xx, yy = np.meshgrid(g, g)
  ref = np.zeros((40, 40, 2))
  for name, w in (("eye_lower_l", 1.0), ("eye_lower_r", 0.5)):
    cx, cy = identity.landmarks()[name]
    ref[..., 1] -= w * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 0.03 ** 2))
  ref *= 1.3 / np.sqrt((ref ** 2).sum(-1)).max()
  np.testing.assert_allclose(field, ref, atol=1e-5)
  assert not expressions.displacement_field(identity, {7: (1.0, 1.0)}, image_size=40,
                                            amplitude_px=0.0).any()


def test_intensity_curve_formula():
  length, apex, rp, fp, res = 11, 3, 0.7, 1.4, 0.08
  got = expressions.intensity_curve(length, apex, rise_power=rp, fall_power=fp, residual=res)
  ref = [((1 - np.cos(np.pi * i / apex)) / 2) ** rp if i <= apex else
         res + (1 - res) * ((1 + np.cos(np.pi * (i - apex) / (length - 1 - apex))) / 2) ** fp
         for i in range(length)]
  np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)


def test_without_distractors_and_amplitude_frames_are_identical():
  settings = generator.validate_settings(small_config(amplitude_px=0.0, **QUIET))
  plan = generator.plan_clips(settings)[0]
  clip = generator.render_clip(generator.identity_of(settings, plan.subject), plan, settings)
  assert (clip == clip[:1]).all()
  settings["head_jitter_px"] = 0.5
  plan = generator.plan_clips(settings)[0]
  clip = generator.render_clip(generator.identity_of(settings, plan.subject), plan, settings)
  assert not (clip == clip[:1]).all()


def test_amplitude_zero_control_is_independent_of_labels(monkeypatch):
  """Re-assigning classes to slots changes nothing but the labels when amplitude is 0."""
  def render_all(amplitude):
    settings = generator.validate_settings(small_config(amplitude_px=amplitude, image_size=24))
    plans = generator.plan_clips(settings)
    return plans, [generator.render_clip(generator.identity_of(settings, p.subject), p, settings)
                   for p in plans]

  plans, clips = {}, {}
  for amplitude in (0.0, 1.0):
    plans[amplitude, "a"], clips[amplitude, "a"] = render_all(amplitude)
  original = generator.class_order
  monkeypatch.setattr(generator, "class_order", lambda *a: original(*a)[::-1])
  for amplitude in (0.0, 1.0):
    plans[amplitude, "b"], clips[amplitude, "b"] = render_all(amplitude)
  a, b = plans[0.0, "a"], plans[0.0, "b"]
  assert [p.expression.emotion for p in a] != [p.expression.emotion for p in b]
  assert [(p.subject, p.filename, p.onset, p.apex_index) for p in a] == [
      (p.subject, p.filename, p.onset, p.apex_index) for p in b]
  assert all(np.array_equal(x, y) for x, y in zip(clips[0.0, "a"], clips[0.0, "b"]))
  assert not all(np.array_equal(x, y) for x, y in zip(clips[1.0, "a"], clips[1.0, "b"]))


def test_label_is_learnable_from_apex_minus_onset_only_with_motion():
  """LOSO ridge classifier on apex - onset: chance at amplitude 0, well above at 2 px."""
  accuracy = {}
  for amplitude in (0.0, 2.0):
    settings = generator.validate_settings(
        small_config(num_subjects=6, clips_per_class=3, image_size=32, amplitude_px=amplitude))
    x, y, groups = [], [], []
    for plan in generator.plan_clips(settings):
      onset, apex = generator.render_clip(generator.identity_of(settings, plan.subject), plan,
                                          settings, [0, plan.apex_index]).astype(np.float32)
      x.append((apex - onset).ravel())
      y.append(expressions.CLASS_NAMES.index(plan.expression.emotion))
      groups.append(plan.subject)
    x, y, groups = np.array(x), np.array(y), np.array(groups)
    pred = np.empty_like(y)
    for subject in np.unique(groups):
      test = groups == subject
      pred[test] = RidgeClassifier(alpha=10.0).fit(x[~test], y[~test]).predict(x[test])
    accuracy[amplitude] = float(np.mean(pred == y))
  assert accuracy[0.0] < 0.35 and accuracy[2.0] > 0.6, accuracy


def test_generate_is_idempotent_atomic_and_safe(tmp_path, monkeypatch):
  root = tmp_path / "data"
  synthetic.generate(small_config(num_subjects=1), root)
  stamp = os.stat(root / synthetic.INTENSITY_FILE).st_mtime_ns
  synthetic.generate(small_config(num_subjects=1), root)
  assert os.stat(root / synthetic.INTENSITY_FILE).st_mtime_ns == stamp
  synthetic.generate(small_config(num_subjects=2), root)
  assert os.path.isdir(root / "Cropped" / "sub02")

  def broken(settings, folder):
    os.makedirs(os.path.join(folder, "Cropped", "sub01"))
    raise RuntimeError("interrupted")

  monkeypatch.setattr(synthetic, "write_tree", broken)
  with pytest.raises(RuntimeError):
    synthetic.generate(small_config(num_subjects=1), tmp_path / "fresh")
  assert sorted(os.listdir(tmp_path)) == ["data"]
  foreign = tmp_path / "foreign"
  foreign.mkdir()
  (foreign / "notes.txt").write_text("mine")
  with pytest.raises(FileExistsError, match="foreign"):
    synthetic.generate(small_config(), foreign)


@pytest.mark.parametrize("key,value,message", [
    ("num_subjects", 0, "num_subjects"), ("max_frames", 4, "max_frames"),
    ("amplitude_px", "big", "amplitude_px"), ("blink_probability", 1.5, "blink_probability")])
def test_bad_config_names_the_key(key, value, message):
  c = small_config().to_dict()
  c[key] = value
  with pytest.raises(ValueError, match=message):
    synthetic.generate(c, "/nonexistent/never/written")
  del c[key]
  with pytest.raises(KeyError, match=key):
    generator.validate_settings(c)


def test_load_true_intensity_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="true_intensity"):
    synthetic.load_true_intensity(tmp_path)
  (tmp_path / synthetic.INTENSITY_FILE).write_text("subject,filename,frame,intensity\n01,EP1,x,0\n")
  with pytest.raises(ValueError, match="row 2"):
    synthetic.load_true_intensity(tmp_path)
