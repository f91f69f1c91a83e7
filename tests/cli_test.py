"""`run.py` on missing or wrongly laid out data, bad config values and untrained workdirs: a
message a user can act on, no traceback."""
import subprocess
import sys
from pathlib import Path

from cmnet_jax import workdir as workdir_lib

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
  from cmnet_jax import cli  # pylint: disable=g-import-not-at-top
  for args, expected in [((), "runs/synthetic"), (("--config=configs/casme2.py:quick",),
                                                   "runs/casme2_quick"),
                         (("--config", "samm:quick"), "runs/samm_quick")]:
    assert str(cli.default_workdir(["run.py", *args])) == expected


def _refused(r, workdir, code):
  """Refused with `code` in a line or two per problem, no traceback, nothing written."""
  assert r.returncode == code, r.stderr
  assert "Traceback" not in r.stderr + r.stdout and not workdir.exists()
  return [line for line in r.stderr.splitlines() if line.strip()]


def test_bad_config_values_are_all_named_before_anything_is_written(tmp_path):
  bad = {"train.batch_size": -4, "train.num_epochs": 0, "train.steps_per_epoch": 0,
         "data.image_size": 0, "data.train_jitter_copies": 0, "train.checkpoints_to_keep": 0,
         "train.num_devices": 99, "model.encoder": "resnet", "model.input_mode": "flow",
         "loss.id_temperature": 0.0, "data.num_frames": 1, "train.checkpoint_every_epochs": 0}
  r = _run("--config=configs/tiny.py", f"--workdir={tmp_path / 'run'}",
           *(f"--config.{k}={v}" for k, v in bad.items()))
  lines = _refused(r, tmp_path / "run", 1)
  assert len(lines) == len(bad) and all(line.startswith("error: ") for line in lines)
  assert sorted(line.split()[1] for line in lines) == sorted(bad)


def test_unknown_config_key_suggests_close_names(tmp_path):
  r = _run("--config.train.epochs=3", f"--workdir={tmp_path / 'run'}")
  (line,) = _refused(r, tmp_path / "run", 2)
  assert line.startswith("error: --config.train.epochs: ")
  assert "did you mean train.num_epochs" in line


def test_unknown_variant_names_the_known_ones(tmp_path):
  r = _run("--config=configs/casme2.py:fast", f"--workdir={tmp_path / 'run'}")
  (line,) = _refused(r, tmp_path / "run", 2)
  assert "unknown variant 'fast' of configs/casme2.py (known: 'quick')" in line


def test_missing_config_file_lists_the_config_files(tmp_path):
  r = _run("--config=configs/casme9.py", f"--workdir={tmp_path / 'run'}")
  (line,) = _refused(r, tmp_path / "run", 2)
  assert "no config file 'configs/casme9.py'" in line and "configs/casme2.py" in line


def test_prepare_mode_is_gone():
  """`--mode=prepare` built TFDS data that training never read (issue 15): removed; the TFDS
  builders stay a library API (tests/tfds_test.py)."""
  r = _run("--mode=prepare", "--helpshort")
  assert r.returncode != 0 and "<train|eval|predict|spot|align>" in r.stderr


def test_eval_and_predict_on_an_untrained_workdir_name_config_json(tmp_path):
  (tmp_path / "run").mkdir()
  for mode in ("eval", "predict", "spot"):
    r = _run(f"--mode={mode}", f"--workdir={tmp_path / 'run'}", f"--frames={tmp_path}")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"{workdir_lib.Workdir(tmp_path / 'run').config_file} does not exist" in r.stderr
    assert "train first" in r.stderr
  assert sorted(p.name for p in (tmp_path / "run").iterdir()) == []


def test_ctrl_c_during_the_first_compile_stops_at_once_and_says_how_to_resume(tmp_path):
  """Issue 23: SIGINT during the first compilation was ignored and the run trained to the end
  (Python's handler waits for the C++ call; a background job inherits SIGINT ignored)."""
  import os  # pylint: disable=g-import-not-at-top
  import signal  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top
  workdir = tmp_path / "run"
  wd = workdir_lib.Workdir(workdir)
  # Started with SIGINT ignored, as a background job of a script is (`trap '' INT`).
  proc = subprocess.Popen(["sh", "-c", "trap '' INT; exec \"$@\"", "sh", sys.executable,
                           str(ROOT / "run.py"), "--config=configs/tiny.py",
                           f"--workdir={workdir}"], cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
  deadline = time.monotonic() + 300
  while not wd.config_file.exists() and proc.poll() is None and time.monotonic() < deadline:
    time.sleep(0.05)           # config.json is written once the data loaded: compiling next
  time.sleep(0.5)
  proc.send_signal(signal.SIGINT)
  sent = time.monotonic()
  out = proc.communicate(timeout=300)[0]
  assert proc.returncode == 130 and time.monotonic() - sent < 5, out
  assert not wd.checkpoint_steps(0, 0) and not wd.is_finished(), out
  assert "interrupted (Ctrl-C): stopped before any checkpoint was saved" in out
  assert f"run.py --config=configs/tiny.py --workdir={workdir}" in out and "Traceback" not in out
  with wd.lock():   # freed
    pass
  assert not [p for p in os.listdir(workdir) if ".tmp" in p]


def test_an_interrupt_lets_a_save_in_progress_finish(tmp_path):
  code = ("import os, signal, sys, time; from cmnet_jax import interrupt; "
          "interrupt.stop_promptly(lambda: 'stopped after the save'); "
          "f = open(sys.argv[1], 'w')\n"
          "with interrupt.saving():\n"
          "  os.kill(os.getpid(), signal.SIGINT); time.sleep(0.5); f.write('complete'); f.close()\n"
          "time.sleep(30)")
  r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "saved")], cwd=ROOT,
                     capture_output=True, text=True, timeout=60)
  assert r.returncode == 130 and r.stderr.strip() == "stopped after the save"
  assert (tmp_path / "saved").read_text() == "complete"


def test_the_interrupt_message_names_what_is_kept(tiny_run):
  from cmnet_jax import interrupt  # pylint: disable=g-import-not-at-top
  text = interrupt.resume_message(tiny_run[0], ["run.py", "--workdir=x y"])
  assert "keeps finished fold group group000_process000.npz; checkpoints of " in text
  assert text.endswith("run.py '--workdir=x y'")


def test_eval_and_predict_never_execute_the_config_file(tmp_path):
  """Issue 23: config files are Python and run as code; eval and predict use the workdir's
  config.json, yet executed `--config` (ml_collections loads it while parsing flags)."""
  marker = tmp_path / "executed"
  evil = tmp_path / "evil.py"
  evil.write_text(f"open({str(marker)!r}, 'w').close()\n"
                  "from configs import tiny\nget_config = tiny.get_config\n")
  workdir = tmp_path / "run"
  workdir.mkdir()                                         # untrained: refused, quickly
  for mode in ("eval", "predict"):
    r = _run(f"--mode={mode}", f"--workdir={workdir}", "--config", str(evil),
             "--config.train.seed=3", f"--frames={tmp_path}")
    assert r.returncode == 1 and "config.json does not exist" in r.stderr, r.stderr
    assert not marker.exists()
  r = _run("--mode=train", f"--workdir={tmp_path / 'other'}", f"--config={evil}",
           "--config.train.num_epochs=0")                 # train reads it (then refuses the 0)
  assert r.returncode == 1 and marker.exists()


def test_eval_says_the_config_arguments_are_ignored(tiny_run, capsys):
  from cmnet_jax import cli  # pylint: disable=g-import-not-at-top
  config = cli._recorded_config(tiny_run[0], None, config_given=True)
  assert config.train.num_epochs == 2
  assert "--config arguments given are ignored, and the config file is not executed" in (
      capsys.readouterr().out)


def test_a_tilde_in_the_workdir_flag_is_the_home_folder(tmp_path):
  """Further case: the shell leaves `--workdir=~/runs/x` alone, and the run made a folder named
  '~' in the current one (which `rm -rf ~` then tempts one to delete)."""
  import os  # pylint: disable=g-import-not-at-top
  r = subprocess.run([sys.executable, str(ROOT / "run.py"), "--mode=eval", "--workdir=~/run"],
                     cwd=tmp_path, capture_output=True, text=True, timeout=300,
                     env={**os.environ, "HOME": str(tmp_path / "home")})
  assert r.returncode == 1 and f"{tmp_path}/home/run/config.json does not exist" in r.stderr
  assert not (tmp_path / "~").exists()


def test_the_command_lists_its_flags_and_the_shipped_configs(tmp_path):
  """`python -m cmnet_jax` (= `cmnet-jax`) from another folder: --helpshort shows the flags of
  run.py, the configs by name and the default config's name (not the whole config)."""
  import os  # pylint: disable=g-import-not-at-top
  r = subprocess.run([sys.executable, "-m", "cmnet_jax", "--helpshort"], cwd=tmp_path,
                     capture_output=True, text=True, timeout=300,
                     env={**os.environ, "PYTHONPATH": str(ROOT)})
  assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr   # absl's help exits 1
  for flag in ("--config", "--workdir", "--mode", "--plugins", "--frames", "--fold", "--out"):
    assert f"  {flag}:" in r.stdout, flag
  assert "(casme2, casme3, megc2019, samm, smic, synthetic, tiny;" in " ".join(r.stdout.split())
  assert "(default: 'synthetic')" in r.stdout and "train_jitter_copies" not in r.stdout
