"""How many host (CPU) devices JAX exposes: call before JAX is imported. Imports nothing of JAX.

On a CPU, `run.py` and `experiments/ablation.py` expose 8 host devices so that LOSO folds run as
independent per-device programs: on the 2-core development machine that is 1.38x faster than
vmapping all folds on one device and than a sequential loop (docs/benchmarks.md). Only the CPU
backend is affected; a count already in XLA_FLAGS (yours, or the tests') is left as it is.
"""
import os

FLAG = "--xla_force_host_platform_device_count"


def expose_cpu_devices(count: int = 8) -> None:
  """Adds `FLAG=count` to XLA_FLAGS unless it already names a count.

  >>> import os
  >>> saved = os.environ.get("XLA_FLAGS")
  >>> os.environ["XLA_FLAGS"] = "--xla_cpu_enable_fast_math=false"
  >>> expose_cpu_devices(8); os.environ["XLA_FLAGS"]
  '--xla_cpu_enable_fast_math=false --xla_force_host_platform_device_count=8'
  >>> expose_cpu_devices(2); os.environ["XLA_FLAGS"]  # already set: unchanged
  '--xla_cpu_enable_fast_math=false --xla_force_host_platform_device_count=8'
  >>> _ = os.environ.pop("XLA_FLAGS") if saved is None else os.environ.update(XLA_FLAGS=saved)
  """
  if FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {FLAG}={count}".strip()
