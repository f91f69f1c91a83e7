"""Test set-up: four simulated CPU devices, set before JAX is imported anywhere, one
persistent compilation cache for the session (shared with the subprocesses tests start), and the
`tiny_run` fixture (one finished tiny training run, shared by the tests that read a workdir)."""
import os
import tempfile

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="cmnet_jax_cache_"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "1")

import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
  """One finished run of configs/tiny.py (3 folds side by side), shared by the test files that
  read a trained workdir: (workdir, results dict). Copy it before changing anything in it."""
  from cmnet_jax import train  # pylint: disable=g-import-not-at-top
  from configs import tiny  # pylint: disable=g-import-not-at-top
  workdir = tmp_path_factory.mktemp("tiny_run")
  return workdir, train.train_and_evaluate(tiny.get_config(), workdir)
