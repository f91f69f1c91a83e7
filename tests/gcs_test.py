"""A workdir on Cloud Storage (issue 25), against a real local server: gcp-storage-emulator
(requirements-test.txt), started on 127.0.0.1 by the `emulator` fixture and stopped after.
gcsfs (etils.epath) reaches it through STORAGE_EMULATOR_HOST, Orbax's tensorstore through
TENSORSTORE_GCS_HTTP_URL. Nothing is mocked.

(a) one process, `gs://` workdir: the predictions and figures of a local-folder run (the
    session's `tiny_run`), eval and predict from it, the run marker refusing a second command;
(b) two processes (jax.distributed on localhost, 2 host devices each), each in its own private
    folder as cwd and host-local cache: the predictions of one process;
(c) one of two processes killed with SIGKILL mid-run: the other finishes its fold groups and
    is stopped at the gather (JAX's coordination service, heartbeat); both rerun: the finished
    fold group is skipped, the predictions identical.
(d), the two processes on a shared local folder, is tests/train_test.py's.
"""
import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import fsspec
import numpy as np
import pytest

from cmnet_jax import predict
from cmnet_jax import storage
from cmnet_jax import train
from cmnet_jax import workdir as workdir_lib
from cmnet_jax.testing import runs
from configs import tiny

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "cmnet-test"


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
  """A Cloud Storage emulator on 127.0.0.1 with an empty bucket; the environment pointing gcsfs
  and tensorstore at it (restored after); yields the env entries for subprocesses."""
  exe = Path(sys.executable).with_name("gcp-storage-emulator")
  if not exe.exists():
    pytest.fail("gcp-storage-emulator is not installed: pip install -r requirements-test.txt")
  port = _free_port()
  log = open(tmp_path_factory.mktemp("emulator") / "log.txt", "wb")  # pylint: disable=R1732
  proc = subprocess.Popen([str(exe), "start", "--host", "127.0.0.1", "--port", str(port),
                           "--default-bucket", BUCKET, "--in-memory"], stdout=log,
                          stderr=subprocess.STDOUT)
  deadline = time.monotonic() + 60
  while True:
    try:
      socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
      break
    except OSError:
      if proc.poll() is not None or time.monotonic() > deadline:
        proc.kill()
        pytest.fail(f"the storage emulator did not start (see {log.name})")
      time.sleep(0.1)
  url = f"http://127.0.0.1:{port}"
  env = {"STORAGE_EMULATOR_HOST": url, "TENSORSTORE_GCS_HTTP_URL": url,
         "CMNET_LOCAL_DIR": str(tmp_path_factory.mktemp("host_local")),
         "GOOGLE_CLOUD_PROJECT": "test"}
  saved = {k: os.environ.get(k) for k in env}
  os.environ.update(env)
  # gcsfs warns on every call that it finds no Google credentials (the emulator needs none).
  logging.getLogger("gcsfs").setLevel(logging.ERROR)
  fsspec.filesystem("gs").clear_instance_cache()  # a gcsfs made before would point elsewhere
  try:
    yield env
  finally:
    for k, v in saved.items():
      if v is None:
        os.environ.pop(k, None)
      else:
        os.environ[k] = v
    proc.kill()
    proc.wait()
    log.close()


def _read(url):
  return storage.as_path(url).read_text()


def _same_as_reference(url, reference, *, same_layout=True):
  """Predictions and figures equal to the reference run's; with another device layout (one
  device per process instead of three devices) the predictions and headline still, the
  float figures (intensity diagnostics, last-epoch losses) to float32 rounding (1e-7 apart)."""
  ref = workdir_lib.Workdir(reference)
  wd = workdir_lib.Workdir(url)
  assert _read(wd.report("predictions")) == ref.report("predictions").read_text()
  got, want = (json.loads(w.report("results").read_text()) for w in (wd, ref))
  assert got["headline"] == want["headline"]
  for key in ("intensity", "training_last_epoch"):
    if same_layout:
      assert got[key] == want[key], key
    else:
      assert got[key].keys() == want[key].keys(), key
      for name, value in want[key].items():
        assert got[key][name] == (value if value is None else pytest.approx(value, rel=1e-5,
                                                                           abs=1e-7)), name
  ref_logits, logits = runs.fold_logits(reference), runs.fold_logits(url)
  assert sorted(ref_logits) == sorted(logits) == [0, 1, 2]
  for fid in ref_logits:
    np.testing.assert_allclose(logits[fid], ref_logits[fid], rtol=1e-5, atol=1e-5)


def test_one_process_on_cloud_storage_equals_a_local_folder(emulator, tiny_run, tmp_path,
                                                            capsys):
  url = f"gs://{BUCKET}/one"
  train.train_and_evaluate(tiny.get_config(), url)
  _same_as_reference(url, tiny_run[0])
  wd = workdir_lib.Workdir(url)
  assert wd.remote and str(wd.path) == url
  # Orbax wrote the checkpoints there, each finished one with its commit file.
  assert wd.checkpoint_steps(0, 0) == [1, 2]
  assert (wd.checkpoint_dir(0, 0) / "2" / storage.COMMIT_FILE).exists()
  # The event stream was copied there; the clip cache stayed on this host.
  assert [p.name for p in (wd.path / "tensorboard").iterdir()] == [
      p.name for p in wd.tensorboard_dir.iterdir()]
  assert not (wd.path / "data").exists()
  assert wd.clip_caches() and str(wd.data_dir).startswith(emulator["CMNET_LOCAL_DIR"])
  assert not (wd.path / ".lock").exists()           # the run marker went with the run
  # Eval reproduces the predictions from the gs:// checkpoints; predict reads them too.
  capsys.readouterr()
  train.train_and_evaluate(wd.load_config(), url, evaluate_only=True)
  _same_as_reference(url, tiny_run[0])
  clip = next(p for p in sorted((Path(wd.data_dir) / "synthetic").rglob("*")) if p.is_dir()
              and any(q.suffix == ".jpg" for q in p.iterdir()))
  result = predict.predict(url, str(clip))
  assert set(result["probabilities"]) == set(wd.read_folds()["class_names"])
  # A second command while the run marker is held is refused, naming the holder.
  with storage.RunMarker(wd.lock_file(0), "pid 1 on another-host"):
    with pytest.raises(train.WorkdirError, match="in use by pid 1 on another-host"):
      train.train_and_evaluate(tiny.get_config(), url)


def test_the_run_marker_is_exclusive_and_taken_over_once_abandoned(emulator, capsys):
  path = storage.as_path(f"gs://{BUCKET}/markers/.lock")
  first = storage.RunMarker(path, "first run", stale_s=2.0, refresh_s=0.3)
  first.acquire()
  time.sleep(1.0)  # refreshed meanwhile: not abandoned
  with pytest.raises(train.WorkdirError, match="in use by first run"):
    storage.RunMarker(path, "second run", stale_s=2.0).acquire()
  first._stop.set()  # pylint: disable=protected-access  # as if killed: no more refreshes
  first._thread.join()  # pylint: disable=protected-access
  time.sleep(2.5)
  with storage.RunMarker(path, "third run", stale_s=2.0, refresh_s=0.3):
    assert "took over the run marker" in capsys.readouterr().out
    assert json.loads(path.read_text())["holder"] == "third run"
  assert not path.exists()


def _launch(url, pid, port, cwd, env, extra=()):
  env = {**os.environ, **env, "PYTHONPATH": str(ROOT),
         "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "CMNET_DISTRIBUTED": "1",
         "JAX_COORDINATOR_ADDRESS": f"localhost:{port}", "CMNET_NUM_PROCESSES": "2",
         "CMNET_PROCESS_ID": str(pid), "CMNET_LOCAL_DIR": str(cwd / "cache"),  # its own disk
         "CMNET_HEARTBEAT_TIMEOUT_S": "5", "CMNET_MARKER_STALE_S": "4",
         "CMNET_MARKER_REFRESH_S": "1"}
  cwd.mkdir(parents=True, exist_ok=True)
  cmd = [sys.executable, str(ROOT / "run.py"), f"--config={ROOT / 'configs' / 'tiny.py'}",
         f"--workdir={url}", *extra]
  # Not through `timeout`: a SIGKILL must reach the run itself.
  return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT)


def _both(url, tmp_path, emulator, extra=()):
  port = _free_port()
  procs = [_launch(url, pid, port, tmp_path / f"host{pid}", emulator, extra) for pid in range(2)]
  try:
    outs = [p.communicate(timeout=400)[0].decode() for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  assert [p.returncode for p in procs] == [0, 0], "\n".join(outs)
  return outs


def test_two_processes_with_no_shared_folder_equal_one_process(emulator, tiny_run, tmp_path):
  url = f"gs://{BUCKET}/two"
  _both(url, tmp_path, emulator)
  _same_as_reference(url, tiny_run[0])
  wd = workdir_lib.Workdir(url)
  assert [(g.group, g.process) for g in wd.group_files()] == [(0, 0), (0, 1)]
  for pid in range(2):  # each host decoded the clips into its own cache, none into the workdir
    assert list((tmp_path / f"host{pid}" / "cache").rglob("clips-*.npz"))
    assert not (tmp_path / f"host{pid}" / "runs").exists()
  assert not (wd.path / "data").exists()


def test_a_killed_process_stops_the_other_and_both_resume(emulator, tiny_run, tmp_path):
  url = f"gs://{BUCKET}/killed"
  # One fold on one device per process: 2 fold groups, so that one is finished at the kill.
  one_device = ["--config.train.num_devices=1", "--config.train.folds_per_device=1"]
  wd = workdir_lib.Workdir(url)
  port = _free_port()
  procs = [_launch(url, pid, port, tmp_path / "first" / f"host{pid}", emulator, one_device)
           for pid in range(2)]
  try:
    _kill_one_mid_run(wd, procs)
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  time.sleep(4)  # the killed run's markers count as abandoned 4 s after their last refresh
  outs = _both(url, tmp_path / "second", emulator, one_device)
  assert "group 1/2 | finished earlier, skipped" in outs[0], outs[0]
  _same_as_reference(url, tiny_run[0], same_layout=False)


def _kill_one_mid_run(wd, procs):
  # Process 1 killed once process 0 has written its first fold group (then it trains its
  # second and waits at the gather for process 1, which cannot come).
  target, gcs = wd.group_file(0, 0), fsspec.filesystem("gs")
  deadline = time.monotonic() + 400
  while procs[0].poll() is None and time.monotonic() < deadline:
    gcs.invalidate_cache()  # else a cached listing answers "absent" for a while
    if target.exists():
      break
    time.sleep(0.02)
  procs[1].kill()
  killed = procs[1].communicate()[0].decode()
  assert target.exists(), killed
  t0 = time.monotonic()
  other = procs[0].communicate(timeout=120)[0].decode()
  assert procs[0].returncode != 0 and time.monotonic() - t0 < 90, other
  assert "stopped sending heartbeats" in other, other  # the coordination service names it
  assert not wd.is_finished(), other


def test_sigterm_after_jax_distributed_starts_stops_the_run_and_removes_its_marker(
    emulator, tmp_path):
  """Issue 25: with jax.distributed started, JAX's preemption service caught SIGTERM and the run
  carried on (`timeout` could not stop it). One process of a distributed run, started as each
  process of a pod is: SIGTERM during the first compilation ends it at once, exit 143, and its
  run marker goes with it (the next command is not refused)."""
  url = f"gs://{BUCKET}/term"
  wd = workdir_lib.Workdir(url)
  env = {**os.environ, **emulator, "PYTHONPATH": str(ROOT), "CMNET_DISTRIBUTED": "1",
         "JAX_COORDINATOR_ADDRESS": f"localhost:{_free_port()}", "CMNET_NUM_PROCESSES": "1",
         "CMNET_PROCESS_ID": "0", "CMNET_LOCAL_DIR": str(tmp_path / "cache")}
  proc = subprocess.Popen([sys.executable, str(ROOT / "run.py"),
                           f"--config={ROOT / 'configs' / 'tiny.py'}", f"--workdir={url}"],
                          cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
  deadline = time.monotonic() + 300
  while not wd.config_file.exists() and proc.poll() is None and time.monotonic() < deadline:
    time.sleep(0.1)            # config.json is written once the data loaded: compiling next
  assert wd.lock_file(0).exists()
  proc.terminate()
  sent = time.monotonic()
  out = proc.communicate(timeout=120)[0]
  assert proc.returncode == 143 and time.monotonic() - sent < 10, out
  assert "interrupted (SIGTERM)" in out and "Traceback" not in out, out
  assert not wd.lock_file(0).exists(), out
