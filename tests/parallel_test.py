"""cmnet_jax.parallel.fold_parallel: every layout gives each fold what a plain call gives it."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cmnet_jax import parallel


def _fold_fn(params, x, scale):
  # One fold's work, with a fold argument that is a pytree and a replicated argument.
  h = jnp.tanh(x @ params["w"] + params["b"])
  return {"out": h * scale, "sum": h.sum()}


@pytest.mark.parametrize("num_devices,folds_per_device", [(1, 1), (4, 1), (1, 4), (2, 2)])
def test_fold_parallel_equals_one_call_per_fold(num_devices, folds_per_device):
  assert jax.local_device_count() >= num_devices  # conftest exposes 4 host devices
  rng = np.random.default_rng(0)
  slots = num_devices * folds_per_device
  params = {"w": rng.normal(size=(slots, 5, 3)).astype(np.float32),
            "b": rng.normal(size=(slots, 3)).astype(np.float32)}
  x = rng.normal(size=(slots, 7, 5)).astype(np.float32)
  scale = np.float32(2.5)
  layout = parallel.FoldLayout(num_folds=slots, devices=tuple(jax.local_devices()[:num_devices]),
                               folds_per_device=folds_per_device)
  fn = parallel.fold_parallel(_fold_fn, layout, fold_args=(0, 1))
  got = parallel.unshard(fn(parallel.shard_folds(layout, params), parallel.shard_folds(layout, x),
                            parallel.replicate(layout, scale)))
  assert got["out"].shape == (slots, 7, 3) and got["sum"].shape == (slots,)
  for k in range(slots):
    want = _fold_fn({"w": params["w"][k], "b": params["b"][k]}, x[k], scale)
    np.testing.assert_allclose(got["out"][k], want["out"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["sum"][k], want["sum"], rtol=1e-5, atol=1e-5)


def _layouts(monkeypatch, devices, num_folds, **kwargs):
  """(layout, the pre-issue-23 layout) on `devices` host devices (only their count matters)."""
  monkeypatch.setattr(jax, "local_devices", lambda: [f"device{i}" for i in range(devices)])
  return (parallel.make_layout(num_folds, **kwargs),
          parallel.make_layout(num_folds, fewest_devices=False, **kwargs))


def test_folds_per_device_uses_only_the_devices_the_folds_need(monkeypatch):
  """Issue 23: train.folds_per_device=2 on 8 devices with 8 folds made 16 slots, 8 of them
  padding (half the compute wasted)."""
  layout, before = _layouts(monkeypatch, 8, 8, folds_per_device=2)
  assert (len(layout.devices), layout.folds_per_device, layout.num_groups) == (4, 2, 1)
  assert before.slots_per_group == 16                        # what it was
  # The default layout (one fold per device) is unchanged: bit-identical runs.
  layout, before = _layouts(monkeypatch, 8, 8)
  assert (len(layout.devices), layout.folds_per_device) == (8, 1) and layout == before
  # Every case: the same number of groups (wall time) as before, no device whose slots are all
  # padding, and one device fewer would need another group.
  for devices in (1, 3, 8):
    for num_folds in range(1, 27):
      for fpd in (1, 2, 3, 4):
        layout, before = _layouts(monkeypatch, devices, num_folds, folds_per_device=fpd)
        slots = layout.num_groups * layout.slots_per_group
        assert layout.num_groups == before.num_groups and slots >= num_folds
        assert slots - num_folds < layout.num_groups * fpd, (devices, num_folds, fpd)
        assert (len(layout.devices) - 1) * fpd * layout.num_groups < num_folds
