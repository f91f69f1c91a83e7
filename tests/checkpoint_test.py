"""CheckpointStore: round trips of sharded fold-stacked states, fallback from damaged checkpoints."""
import os
import shutil
import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cmnet_jax import checkpoint


def _state(offset: float):
  """A fold-stacked AdamW state `[devices=4, folds=2, ...]` laid out by pmap, like the trainer's."""
  tx = optax.adamw(1e-3)

  def init(seed):
    params = {"dense": {"kernel": jax.random.normal(jax.random.key(seed), (3, 2)) + offset,
                        "bias": jnp.full((2,), offset)}}
    return {"params": params, "opt_state": tx.init(params), "step": seed,
            "rng": jnp.stack([seed, seed + 1]).astype(jnp.uint32)}

  return jax.pmap(jax.vmap(init))(jnp.arange(8, dtype=jnp.int32).reshape(4, 2))


def _assert_tree_equal(got, want):
  assert jax.tree.structure(got) == jax.tree.structure(want)
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    assert np.asarray(g).dtype == np.asarray(w).dtype
    np.testing.assert_array_equal(np.asarray(g), np.asarray(w))


@pytest.fixture(scope="module")
def states():
  return [_state(float(i)) for i in range(4)]


def _saved(tmp_path, states, keep=3):
  store = checkpoint.CheckpointStore(tmp_path / "ckpt", keep=keep)
  for i, s in enumerate(states[:3]):
    store.save(5 * (i + 1), s, {"epoch": 5 * (i + 1), "rng": np.array([7, 2**32 - 1], np.uint32),
                                "history": {"loss": [[1.5, np.float32(2.0)]]}, "tag": ("a", 1)})
  return store


def test_round_trip_of_a_sharded_state_to_host(tmp_path, states):
  assert jax.tree.leaves(states[0])[0].sharding.num_devices == 4
  with _saved(tmp_path, states) as store:
    assert store.steps() == [5, 10, 15]
    step, got, extra = store.restore_latest(states[0])
    assert step == 15 and extra["epoch"] == 15
    assert all(isinstance(x, np.ndarray) for x in jax.tree.leaves(got))
    _assert_tree_equal(got, states[2])
    assert extra["rng"].dtype == np.uint32 and extra["rng"].tolist() == [7, 2**32 - 1]
    assert extra["history"] == {"loss": [[1.5, 2.0]]} and extra["tag"] == ["a", 1]


def test_keep_and_empty(tmp_path, states):
  store = checkpoint.CheckpointStore(tmp_path / "ckpt", keep=2)
  assert store.restore_latest(states[0]) is None
  for i, s in enumerate(states):
    store.save(i + 1, s)
  assert store.steps() == [3, 4]
  with pytest.raises(ValueError, match="step 4 already exists"):
    store.save(4, states[0])
  with pytest.raises(ValueError, match="keep"):
    checkpoint.CheckpointStore(tmp_path / "other", keep=0)
  store.close()


# Orbax leaves an asyncio callback behind after a failed TensorStore read: harmless noise.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_damaged_latest_falls_back_with_warning(tmp_path, states, damage):
  store = _saved(tmp_path, states)
  data = list((tmp_path / "ckpt" / "15" / "state" / "d").iterdir())  # the array data file(s)
  assert len(data) == 1
  for p in data:
    if damage == "truncate":
      with open(p, "r+b") as f:
        f.truncate(p.stat().st_size // 2)
    else:
      p.unlink()
  with pytest.warns(RuntimeWarning, match=r"(?s)15 is partial or corrupt.*falling back"):
    step, got, extra = store.restore_latest(states[0])
  assert step == 10 and extra["epoch"] == 10
  _assert_tree_equal(got, states[1])
  assert (tmp_path / "ckpt" / "15.corrupt").is_dir() and store.steps() == [5, 10]
  store.save(15, states[3])  # the resumed run can save that step again
  _assert_tree_equal(store.restore_latest(states[0])[1], states[3])
  store.close()


def test_interrupted_save_leftover_is_ignored_with_warning(tmp_path, states):
  store = _saved(tmp_path, states)
  tmp = tmp_path / "ckpt" / "20.orbax-checkpoint-tmp-1712345678901234"
  shutil.copytree(tmp_path / "ckpt" / "15", tmp)
  shutil.rmtree(tmp / "extra")  # an interrupted save: half of the items written
  with pytest.warns(RuntimeWarning, match="interrupted checkpoint save"):
    step, got, _ = store.restore_latest(states[0])
  assert step == 15 and not tmp.exists()
  _assert_tree_equal(got, states[2])
  store.close()


def test_all_corrupt_raises_and_mismatch_is_not_a_fallback(tmp_path, states):
  store = _saved(tmp_path, states)
  wrong = jax.tree.map(lambda x: np.zeros(x.shape[:1] + (3,) + x.shape[2:], x.dtype), states[0])
  with pytest.raises(checkpoint.CheckpointMismatchError, match=r"is \(\(4, 2\).* in the checkpoint but \(\(4, 3\)"):
    store.restore_latest(wrong)
  with pytest.raises(checkpoint.CheckpointMismatchError, match="missing"):
    store.restore_latest({**jax.tree.map(np.asarray, states[0]), "extra_leaf": np.zeros(2)})
  for step in store.steps():
    shutil.rmtree(tmp_path / "ckpt" / str(step) / "state")
  with pytest.warns(RuntimeWarning), pytest.raises(checkpoint.CheckpointError, match="step 5"):
    store.restore_latest(states[0])
  store.close()


def test_extra_must_be_json_able(tmp_path, states):
  with checkpoint.CheckpointStore(tmp_path / "ckpt") as store:
    with pytest.raises(TypeError, match=r"extra\['f'\]: cannot store"):
      store.save(1, states[0], {"f": object()})
    with pytest.raises(TypeError, match="keys must be str"):
      store.save(1, states[0], {"h": {1: 2}})


def test_multi_process_is_refused_clearly(tmp_path, monkeypatch):
  assert checkpoint.is_supported()
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  assert not checkpoint.is_supported()
  with pytest.raises(NotImplementedError, match="process 0 of 2"):
    checkpoint.CheckpointStore(tmp_path / "ckpt")


# What Orbax 0.11 raised when a real 200 kB tmpfs filled up during a save (issue 23).
_ORBAX_ENOSPC = ('RESOURCE_EXHAUSTED: Error writing "w/0" in OCDBT database at local file "{d}/'
                 '2.orbax-checkpoint-tmp/state.orbax-checkpoint-tmp/ocdbt.process_0/": Failed '
                 'writing: "...": Failed to write 642338 bytes to file 14: No space left on device '
                 "[os_error_code='28']")


@pytest.mark.parametrize("failure", ["disk full", "folder not writable"])
def test_a_failed_save_names_the_folder_the_cause_and_that_resuming_is_safe(tmp_path,
                                                                            monkeypatch, failure):
  """Issue 23: a full disk and an unwritable checkpoint folder gave 85- and 26-frame tracebacks."""
  with checkpoint.CheckpointStore(tmp_path) as store:
    store.save(1, {"w": np.ones(3, np.float32)}, {"epoch": 1})
    real_save = store._manager.save

    def failing_save(step, args, force):
      if failure == "disk full":  # as Orbax fails: after making its temporary folder
        (tmp_path / f"{step}.orbax-checkpoint-tmp" / "state").mkdir(parents=True)
        raise ValueError(_ORBAX_ENOSPC.format(d=tmp_path))
      raise PermissionError(13, "Permission denied", str(tmp_path / f"{step}.orbax-checkpoint-tmp"))
    monkeypatch.setattr(store._manager, "save", failing_save)
    with pytest.raises(checkpoint.CheckpointSaveError) as e:
      store.save(2, {"w": np.zeros(3, np.float32)}, {"epoch": 2})
    message = str(e.value)
    assert "\n" not in message and f"cannot save the checkpoint of epoch 2 in {tmp_path}: " in message
    assert ("the disk is full (No space left on device)" if failure == "disk full" else
            "this user may not write there (Permission denied)") in message
    assert "intact (epochs 1) and resuming is safe" in message and "resumes from epoch 1" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1"]
    monkeypatch.setattr(store._manager, "save", real_save)  # space freed: the run goes on
    assert store.restore_latest({"w": np.zeros(3, np.float32)})[0] == 1
    store.save(2, {"w": np.zeros(3, np.float32)}, {"epoch": 2})
    assert store.steps() == [1, 2]


def test_a_real_full_disk_and_read_only_folder(tmp_path):
  """The same on a real 256 kB tmpfs (where this user may mount one: root in a container)."""
  fs = tmp_path / "fs"
  fs.mkdir()
  if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs",
                                          str(fs)], capture_output=True).returncode != 0:
    pytest.skip("mounting a small tmpfs needs root")
  try:
    with checkpoint.CheckpointStore(fs / "c") as store:
      store.save(1, {"w": np.zeros(10, np.float32)})
      noise = np.random.default_rng(0).random(200_000).astype(np.float32)  # 800 kB, incompressible
      with pytest.raises(checkpoint.CheckpointSaveError, match=r"epoch 2 in .*: the disk is full"):
        store.save(2, {"w": noise})
      subprocess.run(["mount", "-o", "remount,ro", str(fs)], check=True)
      with pytest.raises(checkpoint.CheckpointSaveError, match="the file system is read-only"):
        store.save(3, {"w": np.zeros(10, np.float32)})
      assert store.steps() == [1]
  finally:
    subprocess.run(["umount", str(fs)], check=False)
