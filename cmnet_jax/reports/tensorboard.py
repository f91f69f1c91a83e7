"""TensorBoard event files (tensorboardX): one scalar per name and epoch.

Event files are append-only record streams read while they grow; they are not rewritten
atomically like the other outputs (a cut-off last record is skipped by TensorBoard's reader).
"""
from __future__ import annotations

import math
import os
from typing import Any, Mapping

import numpy as np


class ScalarWriter:
  """Writes `{name: value}` scalars per epoch to `logdir` (a thin tensorboardX wrapper).

  >>> import tempfile
  >>> with ScalarWriter(tempfile.mkdtemp()) as tb:
  ...   tb.write(1, {'loss/total': 1.25, 'loss/ce': np.float32(0.5)})
  """

  def __init__(self, logdir: str | os.PathLike, *, flush_secs: int = 30):
    from tensorboardX import SummaryWriter  # pylint: disable=import-outside-toplevel
    self.logdir = os.fspath(logdir)
    self._writer = SummaryWriter(self.logdir, flush_secs=flush_secs)

  def write(self, step: int, scalars: Mapping[str, Any]) -> None:
    """Adds each scalar at `step`; non-finite values are written too (they show as gaps)."""
    for name, value in scalars.items():
      v = np.asarray(value)
      if v.size != 1:
        raise ValueError(f"tensorboard scalar {name!r} must hold one value, got shape {v.shape}")
      v = float(v.reshape(()))
      self._writer.add_scalar(name, v if math.isfinite(v) else float("nan"), int(step))

  def flush(self) -> None:
    self._writer.flush()

  def close(self) -> None:
    self._writer.close()

  def __enter__(self) -> "ScalarWriter":
    return self

  def __exit__(self, *exc) -> None:
    self.close()
