"""A workdir used the wrong way (issue 15): each case gets a clear error naming the file or key
and what to do, before any work, and nothing the earlier run wrote changes.

Most cases start from a copy of the finished tiny run (`tiny_run` in conftest.py)."""
import json
import os
import shutil
import subprocess
import sys
import time

import openpyxl
import pytest

from cmnet_jax import cli
from cmnet_jax import config_schema
from cmnet_jax import reports
from cmnet_jax import train
from cmnet_jax import workdir as workdir_lib
from cmnet_jax.datasets import synthetic
from configs import casme2
from configs import tiny


def _copy(tiny_run, tmp_path):
  workdir = tmp_path / "run"
  shutil.copytree(tiny_run[0], workdir)
  return workdir


def _snapshot(workdir):
  """{path: (size, mtime)} of every file but the lock file (rewritten by each run holding it)."""
  out, lock = {}, workdir_lib.Workdir(workdir).lock_file()
  for folder, _, files in os.walk(workdir):
    for name in files:
      if os.path.join(folder, name) != str(lock):
        st = os.stat(os.path.join(folder, name))
        out[os.path.relpath(os.path.join(folder, name), workdir)] = (st.st_size, st.st_mtime_ns)
  return out


def _refused(capsys, workdir, config=None, code=1):
  """Runs the tiny config on `workdir` through the command line's code; returns stderr."""
  assert cli.run("train", config or tiny.get_config(), workdir) == code
  err = capsys.readouterr().err
  assert "Traceback" not in err
  return err


def test_workdir_that_is_a_file_is_named(tmp_path, capsys):
  path = tmp_path / "run"
  path.write_text("not a folder")
  assert "is a file, not a folder" in _refused(capsys, path) and path.read_text() == "not a folder"


def test_workdir_whose_parent_is_not_writable_is_named(tmp_path, capsys, monkeypatch):
  monkeypatch.setattr(workdir_lib, "_writable", lambda path: False)  # root may write anywhere
  err = _refused(capsys, tmp_path / "a" / "run")
  assert f"may not write in {tmp_path}" in err and not (tmp_path / "a").exists()


def test_a_second_run_on_a_workdir_in_use_is_refused_and_a_killed_run_leaves_no_lock(
    tmp_path, capsys):
  wd = workdir_lib.Workdir(tmp_path / "run")
  wd.create()
  holder = subprocess.Popen([sys.executable, "-c", (
      "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
      "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, b'pid 4242 (the other run)'); "
      "print('locked', flush=True); time.sleep(300)"), str(wd.lock_file())],
      stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "locked"
    err = _refused(capsys, wd.path)
    assert "is in use by pid 4242 (the other run)" in err and "another --workdir" in err
  finally:
    holder.kill()
    holder.wait()
  with wd.lock():  # the kernel freed the killed holder's lock
    pass


def test_a_failed_first_run_writes_no_config_so_the_corrected_command_is_not_refused(tmp_path,
                                                                                      capsys):
  config = casme2.get_config("quick")
  with config.unlocked():
    config.data.root = str(tmp_path / "missing")
  assert cli.run("train", config, tmp_path / "run") == 1
  assert "does not exist" in capsys.readouterr().err
  wd = workdir_lib.Workdir(tmp_path / "run")
  assert not wd.config_file.exists() and not wd.folds_file.exists()
  with config.unlocked():
    config.data.root = str(tmp_path / "CASME2")
  assert wd.check_config(config) == []


def test_truncated_config_json_is_named(tiny_run, tmp_path, capsys):
  workdir = _copy(tiny_run, tmp_path)
  wd = workdir_lib.Workdir(workdir)
  wd.config_file.write_text(wd.config_file.read_text()[:100])
  before = _snapshot(workdir)
  err = _refused(capsys, workdir)
  assert f"{wd.config_file} cannot be read" in err and "Delete it" in err
  assert _snapshot(workdir) == before


def test_truncated_fold_group_file_is_named_before_any_work(tiny_run, tmp_path, capsys):
  workdir = _copy(tiny_run, tmp_path)
  wd = workdir_lib.Workdir(workdir)
  path = wd.group_file(0, 0)
  path.write_bytes(path.read_bytes()[:300])
  before = _snapshot(workdir)
  err = _refused(capsys, workdir)
  assert f"{path} is damaged" in err and "Delete it and run the same command again" in err
  assert _snapshot(workdir) == before


@pytest.mark.parametrize("edit", ["delete a row", "sort the rows"])
def test_annotation_changed_after_a_finished_run_is_refused(tiny_run, tmp_path, capsys, edit):
  workdir = _copy(tiny_run, tmp_path)
  wd = workdir_lib.Workdir(workdir)
  sheet_path = wd.generated_data("synthetic") / synthetic.CODING_FILE
  book = openpyxl.load_workbook(sheet_path)
  sheet = book.active
  if edit == "delete a row":
    sheet.delete_rows(2)
  else:
    rows = [[c.value for c in row] for row in sheet.iter_rows(min_row=2)]
    for r, values in enumerate(reversed(rows), start=2):
      for c, value in enumerate(values, start=1):
        sheet.cell(r, c, value)
  book.save(sheet_path)
  before = _snapshot(workdir)
  err = _refused(capsys, workdir)
  assert "the data changed since this workdir was trained" in err and "new --workdir" in err
  assert ("1 clips gone" if edit == "delete a row" else "another order") in err
  assert _snapshot(workdir) == before


def test_a_finished_run_re_prints_read_only(tiny_run, tmp_path, capsys, monkeypatch):
  workdir = _copy(tiny_run, tmp_path)
  before = _snapshot(workdir)
  monkeypatch.setattr(workdir_lib, "_writable", lambda path: False)  # root may write anywhere
  assert cli.run("train", tiny.get_config(), workdir) == 0
  out = capsys.readouterr().out
  assert "rows  samples" in out and "read-only for this user" in out
  assert _snapshot(workdir) == before


def test_an_unfinished_read_only_workdir_is_refused(tmp_path, capsys, monkeypatch):
  (tmp_path / "run").mkdir()
  monkeypatch.setattr(workdir_lib, "_writable", lambda path: False)
  err = _refused(capsys, tmp_path / "run")
  assert "not writable by this user" in err and "copy it" in err
  assert os.listdir(tmp_path / "run") == []


def test_re_printing_adds_no_tensorboard_event_file(tiny_run, tmp_path):
  workdir = _copy(tiny_run, tmp_path)
  wd = workdir_lib.Workdir(workdir)
  before = {p.name: p.stat().st_size for p in wd.tensorboard_dir.iterdir()}
  start = time.time()
  train.train_and_evaluate(tiny.get_config(), workdir)
  assert {p.name: p.stat().st_size for p in wd.tensorboard_dir.iterdir()} == before
  assert all(p.stat().st_mtime < start for p in wd.tensorboard_dir.iterdir())


def test_config_diff_names_every_key():
  assert workdir_lib.config_diff({"a": {"x": 1, "y": [1, 2]}, "b": {"z": float("nan")}},
                                 {"a": {"x": 2, "y": (1, 2)}, "b": {"z": float("nan")}}) == [
                                     "a.x: 1 -> 2"]


def _drop_recorded_key(wd, key):
  """Makes `wd` an older workdir: its config.json recorded before `key` existed."""
  recorded = wd.read_config()
  block, name = key.split(".")
  del recorded[block][name]
  wd.config_file.write_text(json.dumps(recorded, indent=2))


def test_a_workdir_recorded_before_a_key_existed_resumes_re_prints_and_evaluates(
    tiny_run, tmp_path, capsys):
  """Issue 23: a new config key (e.g. a loss term's coefficient, default 0) locked every older
  workdir out ('(absent) -> 0.0 ... change it back'). A key absent from config.json counts as
  its default; absent with another value is still refused."""
  workdir = _copy(tiny_run, tmp_path)
  wd = workdir_lib.Workdir(workdir)
  before = wd.report("predictions").read_text()
  _drop_recorded_key(wd, "loss.lambda_order")         # = its default (1.0) in tiny's config
  _drop_recorded_key(wd, "train.num_epochs")          # tiny trains 2 epochs, the default is 20
  err = _refused(capsys, workdir)
  assert "train.num_epochs: (absent; its default 20) -> 2" in err and "lambda_order" not in err
  _drop_recorded_key(wd, "model.dropout")             # tiny keeps the default
  recorded = wd.read_config()
  recorded["train"]["num_epochs"] = 2
  wd.config_file.write_text(json.dumps(recorded))
  assert cli.run("train", tiny.get_config(), workdir) == 0        # re-print
  assert "rows  samples" in capsys.readouterr().out
  _drop_recorded_key(wd, "loss.lambda_order")
  loaded = wd.load_config()                 # eval and predict: the recorded config + defaults
  assert loaded.loss.lambda_order == 1.0 and loaded.model.dropout == 0.2
  config_schema.validate(loaded)
  # Resume: the final epoch, its group file and the reports removed.
  shutil.rmtree(wd.checkpoint_dir(0, 0) / "2")
  wd.group_file(0, 0).unlink()
  wd.results_file.unlink()
  assert cli.run("train", tiny.get_config(), workdir) == 0
  assert wd.report("predictions").read_text() == before and wd.is_finished()
  assert wd.read_config()["loss"]["lambda_order"] == 1.0          # recorded in full again


@pytest.mark.parametrize("kind", ["symlink", "hardlink", "folder", "fifo"])
def test_a_lock_that_is_not_a_plain_file_is_refused_and_nothing_is_written_through_it(
    tmp_path, capsys, kind):
  """Issue 23: `<workdir>/.lock -> ~/.bashrc` made the run truncate and write the link's target."""
  victim = tmp_path / "victim.txt"
  victim.write_text("precious\n")
  wd = workdir_lib.Workdir(tmp_path / "run")
  wd.create()
  make = {"symlink": lambda p: p.symlink_to(victim), "hardlink": lambda p: os.link(victim, p),
          "folder": lambda p: p.mkdir(), "fifo": os.mkfifo}
  make[kind](wd.lock_file())
  err = _refused(capsys, wd.path)
  assert f"{wd.lock_file()} is " in err and "nothing was written through it" in err
  assert "remove it" in err and victim.read_text() == "precious\n"
  assert sorted(p.name for p in wd.path.iterdir()) == [".lock"]


@pytest.mark.parametrize("mask", [0o077, 0o002], ids=["077", "002"])
def test_files_a_run_writes_honour_the_umask(tiny_run, tmp_path, mask):
  """Issue 23: atomic writes (config.json, folds.json, the reports) were 0o644 whatever the
  umask, so a private umask (077) still left them readable by every user."""
  workdir = _copy(tiny_run, tmp_path)
  wd = workdir_lib.Workdir(workdir)
  wd.lock_file().unlink()
  old = os.umask(mask)
  try:
    reports.atomic_write(tmp_path / "a.txt", "x")
    train.train_and_evaluate(tiny.get_config(), workdir)    # re-print: rewrites config, reports
  finally:
    os.umask(old)
  written = [tmp_path / "a.txt", wd.lock_file(), wd.config_file, wd.folds_file,
             *(wd.report(name) for name in workdir_lib.REPORTS)]
  assert {p.name: oct(p.stat().st_mode & 0o777) for p in written} == {
      p.name: oct(0o666 & ~mask) for p in written}


def test_a_full_disk_while_writing_the_run_files_is_one_line(tiny_run, tmp_path, capsys,
                                                                monkeypatch):
  """Issue 23: a full disk gave a traceback; now one line naming the file, the cause, and that
  resuming is safe; the file keeps its old content and no temporary file is left."""
  import errno  # pylint: disable=g-import-not-at-top
  workdir = _copy(tiny_run, tmp_path)
  wd = workdir_lib.Workdir(workdir)
  before = wd.config_file.read_text()

  def full(fd):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
  monkeypatch.setattr(os, "fsync", full)   # the first write of a re-print: config.json
  (line,) = _refused(capsys, workdir).splitlines()
  assert line.startswith(f"error: cannot write {wd.config_file}: the disk is full (No space left "
                         "on device). What was saved before is intact") and "resuming is safe" in line
  assert wd.config_file.read_text() == before and not list(workdir.glob(".*.tmp"))


def _unfinished(tiny_run, tmp_path):
  """A copy of the tiny run stopped after epoch 1 (final checkpoint, group file, reports gone)."""
  workdir = _copy(tiny_run, tmp_path)
  wd = workdir_lib.Workdir(workdir)
  shutil.rmtree(wd.checkpoint_dir(0, 0) / "2")
  wd.group_file(0, 0).unlink()
  wd.results_file.unlink()
  return wd


@pytest.mark.parametrize("where", ["tensorboard", "checkpoint folder", "checkpoints"])
def test_a_file_where_the_run_makes_a_folder_is_named(tiny_run, tmp_path, capsys, where):
  """Further case (issue 23): a file in the way of the TensorBoard or checkpoint folder gave a
  traceback (FileExistsError, NotADirectoryError); one line naming it, before any training."""
  wd = _unfinished(tiny_run, tmp_path)
  path = {"tensorboard": wd.tensorboard_dir, "checkpoint folder": wd.checkpoint_dir(0, 0),
          "checkpoints": wd.path / "checkpoints"}[where]
  shutil.rmtree(path)
  path.write_text("in the way")
  (line,) = _refused(capsys, wd.path).splitlines()
  kind = ("expects a folder (Not a directory)" if where == "checkpoints" else
          "makes a folder (File exists)")
  assert line.startswith(f"error: {path} is a file where the run {kind}"), line
  assert "Move it away" in line and path.read_text() == "in the way"
  assert not wd.is_finished() and not wd.group_files()        # nothing trained


def test_a_failed_npz_write_leaves_no_temporary_and_names_the_file(tmp_path, monkeypatch):
  """Further case: a full disk while writing a fold-group file or the clip cache left its
  temporary (`<name>.tmpPID.npz`, which the clip-cache glob even took for a cache)."""
  import errno  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  wd = workdir_lib.Workdir(tmp_path)
  wd.save_group(0, 0, {"fold_ids": np.arange(3)})
  real = np.savez

  def full(file, **arrays):
    file.write(b"PK partial")
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
  monkeypatch.setattr(np, "savez", full)
  for save, path in [(lambda: wd.save_group(0, 0, {"fold_ids": np.arange(5)}), wd.group_file(0, 0)),
                     (lambda: wd.save_clip_cache(wd.clip_cache("c", "d"), {"x": np.zeros(2)}),
                      wd.clip_cache("c", "d"))]:
    with pytest.raises(OSError) as e:
      save()
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(path)
    assert sorted(p.name for p in path.parent.iterdir()) == (
        ["group000_process000.npz"] if path == wd.group_file(0, 0) else [])
  monkeypatch.setattr(np, "savez", real)
  assert wd.load_group(wd.group_file(0, 0))["fold_ids"].tolist() == [0, 1, 2]   # the old one
  (wd.data_dir / f".{wd.clip_cache('c', 'd').name}.tmp99").write_bytes(b"killed mid-write")
  assert wd.clip_caches("c") == []


def test_a_stray_file_named_like_an_epoch_is_not_a_checkpoint(tmp_path):
  """Further case: a file named `3` in a checkpoint folder (a note, a download) counted as a
  checkpoint, so a workdir that trained nothing refused a new config."""
  wd = workdir_lib.Workdir(tmp_path)
  wd.checkpoint_dir(0, 0).mkdir(parents=True)
  (wd.checkpoint_dir(0, 0) / "3").write_text("not a checkpoint")
  assert wd.trained() == [] and wd.checkpoint_steps(0, 0) == []
  config = tiny.get_config()
  wd.write_config(config)
  with config.unlocked():
    config.train.seed = 5
  (note,) = wd.check_config(config)
  assert "trained nothing; this command's config replaces it" in note


def test_a_workdir_path_the_system_refuses_is_one_line(tmp_path, capsys):
  """Further case: a --workdir with a name over 255 bytes gave an OSError traceback."""
  (line,) = _refused(capsys, tmp_path / ("a" * 300) / "run").splitlines()
  assert "cannot be used: File name too long; pass a shorter path to a folder" in line
  assert sorted(os.listdir(tmp_path)) == []


def test_an_edited_config_json_with_a_bad_value_names_the_file(tiny_run, tmp_path, capsys):
  """Further case: eval on a config.json edited by hand ("num_epochs": "two") named the key as
  if it came from the command line; it says the value is in config.json."""
  workdir = _copy(tiny_run, tmp_path)
  wd = workdir_lib.Workdir(workdir)
  recorded = wd.read_config()
  recorded["train"]["num_epochs"] = "two"
  wd.config_file.write_text(json.dumps(recorded))
  before = _snapshot(workdir)
  assert cli.run("eval", None, workdir) == 1
  err = capsys.readouterr().err
  assert "train.num_epochs = 'two': expected an int >= 1" in err
  assert f"these values are in {wd.config_file}" in err and _snapshot(workdir) == before


def test_a_folder_with_other_content_and_no_run_is_refused(tmp_path, capsys):
  """Further case: `--workdir=$HOME` (or the data folder) by mistake: the run mixed its
  config.json, data/, checkpoints/ and reports into it."""
  home = tmp_path / "home"
  (home / "photos").mkdir(parents=True)
  (home / "notes.txt").write_text("mine")
  (line,) = _refused(capsys, home).splitlines()
  assert f"--workdir {home} is a folder with other content (notes.txt, photos)" in line
  assert "Pass a new or empty folder" in line and "nothing was written" in line
  assert sorted(os.listdir(home)) == ["notes.txt", "photos"]
  finder = tmp_path / "new"
  finder.mkdir()
  (finder / ".DS_Store").write_bytes(b"")
  workdir_lib.Workdir(finder).create()               # hidden files alone: an empty folder


def test_partial_files_of_an_interrupted_write_are_removed_with_a_note(tiny_run, tmp_path,
                                                                       capsys):
  """Further case: a run killed while writing (SIGKILL, power loss) left `.results.json.*.tmp`,
  `.group*.npz.tmp*` and clip-cache temporaries in the workdir for good."""
  workdir = _copy(tiny_run, tmp_path)
  wd = workdir_lib.Workdir(workdir)
  partial = [workdir / ".results.json.x1y2.tmp", workdir / ".config.json.a1b2.tmp",
             workdir / "folds" / ".group000_process000.npz.tmp123",
             wd.data_dir / "clips-a-b.npz.tmp77.npz"]
  for p in partial:
    p.write_bytes(b"half")
  (workdir / ".mine.tmp").write_text("not the run's")
  train.train_and_evaluate(tiny.get_config(), workdir)     # re-print
  assert "note: removed 4 partial file(s) left in" in capsys.readouterr().out
  assert not any(p.exists() for p in partial) and (workdir / ".mine.tmp").exists()


def test_an_event_file_that_is_a_link_is_refused_before_training(tiny_run, tmp_path, capsys):
  """Further case (as the lock, issue 23 item 3): `tensorboard/events... -> ~/.bashrc` in an
  unfinished workdir: the resumed run truncated the link's target to its TensorBoard records
  (none: emptied it) and appended to it."""
  wd = _unfinished(tiny_run, tmp_path)
  (events,) = list(wd.tensorboard_dir.iterdir())
  victim = tmp_path / "victim.txt"
  victim.write_text("precious\n")
  events.unlink()
  events.symlink_to(victim)
  (line,) = _refused(capsys, wd.path).splitlines()
  assert line == (f"error: {events} is a symbolic link, not the TensorBoard event file a run "
                  f"writes; nothing was written through it. Remove it (rm {events}) and run the "
                  "command again")
  assert victim.read_text() == "precious\n" and wd.checkpoint_steps(0, 0) == [1]



def test_a_recorded_key_the_code_no_longer_has_says_so(tiny_run, tmp_path, capsys):
  """Further case (the converse of a new key): a key of the recorded config that this code does
  not have (a custom loss term registered by the training script only, or a key removed) was
  refused as '0.5 -> (absent) ... change it back'. Still refused (the objective would differ),
  but the line says why the key is absent."""
  workdir = _copy(tiny_run, tmp_path)
  wd = workdir_lib.Workdir(workdir)
  recorded = wd.read_config()
  recorded["loss"]["lambda_peak"] = 0.05
  wd.config_file.write_text(json.dumps(recorded))
  err = _refused(capsys, workdir)
  assert "loss.lambda_peak: 0.05 -> (absent: this code has no such key)" in err
