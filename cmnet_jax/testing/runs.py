"""What tests read back from a trained workdir (local folder or gs:// URL)."""
from __future__ import annotations

from typing import Any

import numpy as np

from cmnet_jax import workdir as workdir_lib


def fold_logits(workdir: Any) -> dict[int, np.ndarray]:
  """{fold id: held-out logits `[clips, classes]`} from every fold-group file of a workdir."""
  wd, out = workdir_lib.Workdir(workdir), {}
  for g in wd.group_files():
    arrays = wd.load_group(g.path)
    for slot, fid in enumerate(arrays["fold_ids"]):
      if fid >= 0:
        out[int(fid)] = arrays["logits"][slot][arrays["test_mask"][slot]]
  return out
