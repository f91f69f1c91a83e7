"""`run.py` on missing or wrongly laid out data: a message a user can act on, no traceback."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*args):
  return subprocess.run([sys.executable, str(ROOT / "run.py"), *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=300)


def test_missing_database_names_path_source_and_config_key(tmp_path):
  missing = tmp_path / "CASME2"
  r = _run("--config=configs/casme2.py", f"--config.data.root={missing}",
           f"--workdir={tmp_path / 'run'}")
  assert r.returncode != 0
  assert str(missing) in r.stderr
  assert "request it from" in r.stderr and "data.root" in r.stderr
  assert "Traceback" not in r.stderr + r.stdout


def test_missing_annotation_file_is_reported(tmp_path):
  (tmp_path / "Cropped" / "sub01").mkdir(parents=True)
  r = _run("--config=configs/casme2.py", f"--config.data.root={tmp_path}",
           f"--workdir={tmp_path / 'run'}")
  assert r.returncode != 0
  assert "CASME2-coding" in r.stderr and "data.annotation" in r.stderr
  assert "Traceback" not in r.stderr + r.stdout


def test_empty_root_config_key_is_named(tmp_path):
  r = _run("--config=configs/samm.py", f"--workdir={tmp_path / 'run'}")
  assert r.returncode != 0
  assert "data.root" in r.stderr and "Traceback" not in r.stderr


def test_predict_needs_frames(tmp_path):
  r = _run("--mode=predict", f"--workdir={tmp_path}")
  assert r.returncode == 2 and "--frames" in r.stderr


def test_default_workdir_follows_config_and_variant():
  code = ("import sys, run; from absl import flags; flags.FLAGS(sys.argv); "
          "print(run.default_workdir())")
  for args, expected in [((), "runs/synthetic"), (("--config=configs/casme2.py:quick",),
                                                   "runs/casme2_quick")]:
    r = subprocess.run([sys.executable, "-c", code, "run.py", *args], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == expected
