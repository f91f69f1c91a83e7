"""Device mapping for fold-parallel training: the only module that knows how many devices exist.

Leave-one-subject-out folds are independent models. We stack their train states on a leading fold
axis and lay the folds out as `[devices, folds_per_device, ...]`: `jax.pmap` spreads the first axis
over devices and `jax.vmap` runs the second one on each device. Nothing in the step communicates
across folds or devices (no psum/pmean): results are gathered on the host.

Multi-host (TPU pods, multi-node GPU): every process sees only its local devices; the global fold
list is cut into *fold groups* of `process_count * local_devices * folds_per_device` slots, and each
process trains the slots of its own devices. Padded slots (fold count not a multiple of the slot
count) train on a dummy fold and are masked out of every result.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence

import jax
import numpy as np

AXIS = "devices"


@dataclasses.dataclass(frozen=True)
class FoldLayout:
  """Where each fold trains.

  Attributes:
    num_folds: real folds.
    devices: this process's devices used by the pmap.
    folds_per_device: vmap width on every device.
    process_index, process_count: this process and how many there are.
  """
  num_folds: int
  devices: tuple
  folds_per_device: int
  process_index: int = 0
  process_count: int = 1

  @property
  def slots_per_process(self) -> int:
    return len(self.devices) * self.folds_per_device

  @property
  def slots_per_group(self) -> int:
    return self.slots_per_process * self.process_count

  @property
  def num_groups(self) -> int:
    return max(1, math.ceil(self.num_folds / self.slots_per_group))

  def local_folds(self, group: int) -> np.ndarray:
    """Fold ids of this process's slots in `group`; -1 marks a padded slot. Shape [slots]."""
    start = group * self.slots_per_group + self.process_index * self.slots_per_process
    ids = np.arange(start, start + self.slots_per_process)
    return np.where(ids < self.num_folds, ids, -1)


def make_layout(num_folds: int, *, num_devices: int = 0, folds_per_device: int = 0,
                fewest_devices: bool = True) -> FoldLayout:
  """Chooses the layout for `num_folds` folds on this process's devices.

  Args:
    num_folds: number of LOSO folds.
    num_devices: how many local devices to use at most; 0 = all of them (never more than useful).
    folds_per_device: vmap width; 0 = enough to hold every fold in one group.
    fewest_devices: with a given `folds_per_device`, use only as many devices as the folds need
      for the same number of groups (8 folds x 2 per device: 4 devices, not 8 with 8 padded
      slots). False gives the layout of versions before issue 23, for workdirs trained with it.

  >>> layout = make_layout(2, folds_per_device=2)  # one device, not two with two padded slots
  >>> len(layout.devices), layout.folds_per_device, layout.num_groups
  (1, 2, 1)
  """
  if num_folds < 1:
    raise ValueError(f"num_folds must be >= 1, got {num_folds}")
  local = jax.local_devices()
  pcount = jax.process_count()
  if num_devices < 0 or num_devices > len(local):
    raise ValueError(f"train.num_devices={num_devices}, but this process has {len(local)} devices")
  ndev = num_devices or len(local)
  # Never use more devices than there are folds to put on them.
  ndev = max(1, min(ndev, math.ceil(num_folds / pcount)))
  fpd = folds_per_device or math.ceil(num_folds / (ndev * pcount))
  if folds_per_device and fewest_devices:
    # As many groups as these devices need, then the fewest devices that keep that many: the
    # same wall time without training padded slots.
    groups = math.ceil(num_folds / (ndev * fpd * pcount))
    ndev = math.ceil(num_folds / (groups * fpd * pcount))
  return FoldLayout(num_folds=num_folds, devices=tuple(local[:ndev]), folds_per_device=fpd,
                    process_index=jax.process_index(), process_count=pcount)


def _sharding(layout: FoldLayout) -> jax.sharding.NamedSharding:
  mesh = jax.sharding.Mesh(np.array(layout.devices), (AXIS,))
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(AXIS))


def shard_folds(layout: FoldLayout, tree: Any) -> Any:
  """Host arrays `[slots, ...]` -> device arrays `[devices, folds_per_device, ...]`."""
  ndev, fpd = len(layout.devices), layout.folds_per_device

  def put(x):
    x = np.asarray(x)
    if x.shape[0] != ndev * fpd:
      raise ValueError(f"expected a leading fold axis of {ndev * fpd} slots, got shape {x.shape}")
    return jax.device_put(x.reshape((ndev, fpd) + x.shape[1:]), _sharding(layout))

  return jax.tree.map(put, tree)


def replicate(layout: FoldLayout, tree: Any) -> Any:
  """Puts one copy of `tree` on every device: `[...]` -> `[devices, ...]` (done once per run)."""
  ndev = len(layout.devices)
  return jax.tree.map(
      lambda x: jax.device_put(np.broadcast_to(np.asarray(x), (ndev,) + np.shape(x)),
                               _sharding(layout)), tree)


def unshard(tree: Any) -> Any:
  """Device arrays `[devices, folds_per_device, ...]` -> host NumPy `[slots, ...]`."""
  return jax.tree.map(lambda x: np.asarray(x).reshape((-1,) + x.shape[2:]), tree)


def fold_parallel(fn: Callable, layout: FoldLayout, *, fold_args: Sequence[int],
                  donate: Sequence[int] = ()) -> Callable:
  """Lifts a one-fold function to all of this process's slots.

  `fn(*args)` works on one fold. Positional arguments listed in `fold_args` carry the layout's
  `[devices, folds_per_device, ...]` axes; the others are replicated `[devices, ...]` (see
  `replicate`) and shared by the folds of a device. The result has `[devices, folds_per_device]`
  leading axes.
  """
  def in_axes(n):
    return tuple(0 if i in fold_args else None for i in range(n))

  def per_device(*args):
    if layout.folds_per_device == 1:
      # One fold per device (run.py's CPU default): call fn on the fold itself rather than
      # through a vmap of width 1, whose batched program ran the default's epoch 1.4x slower
      # on the 2-core CPU (docs/benchmarks.md). Same maths; float rounding may differ.
      squeezed = [jax.tree.map(lambda x: x[0], a) if i in fold_args else a
                  for i, a in enumerate(args)]
      return jax.tree.map(lambda x: x[None], fn(*squeezed))
    return jax.vmap(fn, in_axes=in_axes(len(args)))(*args)

  return jax.pmap(per_device, axis_name=AXIS, devices=layout.devices,
                  donate_argnums=tuple(donate))
