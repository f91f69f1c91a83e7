"""The README's functional-API example runs as written (so the README stays true)."""
import re
from pathlib import Path

import numpy as np


def test_functional_loss_api_example_runs():
  text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
  blocks = re.findall(r"```python\n(.*?)```", text, re.S)
  example = next(b for b in blocks if "make_objective" in b)
  namespace = {}
  exec(compile(example, "README.md", "exec"), namespace)  # pylint: disable=exec-used
  assert set(namespace["terms"]) == {"id", "wilcoxon", "order", "ce"}
  assert np.isfinite(float(namespace["total"]))
  assert namespace["l_order"].shape == (4,) and namespace["l_z"].shape == (4,)
