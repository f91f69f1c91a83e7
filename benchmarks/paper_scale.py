"""Paper-scale LOSO training speed on CASME II shapes: fold-parallel vs a sequential per-fold loop,
utilisation, and the projected wall time of a whole LOSO run.

    python -m benchmarks.paper_scale --out docs/benchmarks_paper_scale.md     # on a GPU / TPU
    python -m benchmarks.paper_scale --folds 2 --steps-per-epoch 2 --repeats 1   # CPU, small

The program is the one `run.py --config=configs/casme2.py` trains (ResNet-18 ICE + FFE, 112x112,
T = 9, batch 16 clips per fold, the full configured objective, AdamW; 16 steps per epoch x 60
epochs = 960 steps per fold), on random uint8 clips of CASME II's size (255 clips, 26 subjects,
4 jittered samplings per clip held on the device). What it does:

1. Chooses the folds per device from device memory: compiles the one-fold epoch, reads XLA's
   memory analysis (arguments + temporaries) and the device's memory limit, and puts as many
   folds on each device as fit in `--memory-fraction` of it (at most all folds); then compiles
   the fold-parallel epoch (pmap over devices, vmap over each device's folds) and checks its
   memory analysis, halving the folds per device if it does not fit.
2. Times the fold-parallel epoch (all folds of one fold group at once) and the one-fold epoch
   run once per fold (the sequential loop), medians of `--repeats` after compilation.
3. Prints steps/s, clips/s, FLOPs executed (XLA's count of ONE compiled step x steps x folds: a
   `lax.scan` body is counted once by XLA's cost analysis), the achieved FLOP/s and its ratio
   to the device's measured dense matmul rate in the compute dtype (8192^2 jitted on GPU/TPU,
   2048^2 on CPU), and the projected wall time of the whole LOSO run: fold groups x 960 steps /
   (steps/s), plus the compile time, for both ways.

`--dtype` is the compute dtype (`model.dtype`; parameters and optimizer state stay float32):
'auto' = bfloat16 on GPU/TPU (tensor cores / MXU), float32 on CPU (no gain measured there).
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.training import make_inputs
from cmnet_jax import models, parallel
from cmnet_jax import train_step as ts

CASME2_CLIPS, CASME2_SUBJECTS = 255, 26


def make_config(args):
  from configs import casme2  # pylint: disable=g-import-not-at-top
  c = casme2.get_config()
  run_steps = c.train.num_epochs * c.train.steps_per_epoch  # 60 x 16 = 960 per fold
  with c.unlocked():
    c.model.dtype = args.dtype
    if args.steps_per_epoch:
      c.train.steps_per_epoch = args.steps_per_epoch
    if args.batch:
      c.train.batch_size = args.batch
    if args.image_size:
      c.data.image_size = args.image_size
  return c, run_steps


def device_memory_bytes(device) -> int:
  """The device's memory limit (accelerators), or the host's available memory (CPU)."""
  stats = {}
  try:
    stats = device.memory_stats() or {}
  except Exception:  # pylint: disable=broad-except
    pass
  if stats.get("bytes_limit"):
    return int(stats["bytes_limit"])
  try:
    with open("/proc/meminfo") as f:
      for line in f:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024 // len(jax.local_devices())
  except OSError:
    pass
  return 8 << 30


def program_bytes(compiled) -> int:
  m = compiled.memory_analysis()
  if m is None:
    return 0
  return int(m.argument_size_in_bytes + m.temp_size_in_bytes + m.output_size_in_bytes
             - m.alias_size_in_bytes)


def flops_of(compiled) -> float:
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0]
  return float(cost.get("flops", float("nan"))) if cost else float("nan")


def matmul_rate(dtype) -> float:
  n = 2048 if jax.default_backend() == "cpu" else 8192
  a = jnp.asarray(np.random.default_rng(0).normal(size=(n, n)), dtype)
  f = jax.jit(lambda a: a @ a)
  jax.block_until_ready(f(a))
  times = []
  for _ in range(5):
    t0 = time.perf_counter()
    jax.block_until_ready(f(a))
    times.append(time.perf_counter() - t0)
  return 2 * n ** 3 / statistics.median(times)


def timed(fn, repeats: int) -> float:
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def fmt_s(seconds: float) -> str:
  if seconds >= 3600:
    return f"{seconds / 3600:.1f} h"
  if seconds >= 120:
    return f"{seconds / 60:.1f} min"
  return f"{seconds:.0f} s"


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--folds", type=int, default=CASME2_SUBJECTS,
                  help="folds to build and time (CASME II: 26; fewer on a CPU)")
  ap.add_argument("--project-folds", type=int, default=CASME2_SUBJECTS,
                  help="folds of the projected whole run (CASME II: 26)")
  ap.add_argument("--steps-per-epoch", type=int, default=0,
                  help="steps per timed epoch (0 = the config's 16)")
  ap.add_argument("--total-steps", type=int, default=0,
                  help="steps per fold of the projected run (0 = the config's epochs x steps)")
  ap.add_argument("--batch", type=int, default=0, help="clips per fold per step (0 = 16)")
  ap.add_argument("--image-size", type=int, default=0, help="frame size (0 = 112)")
  ap.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16"))
  ap.add_argument("--folds-per-device", type=int, default=0, help="0 = chosen from memory")
  ap.add_argument("--memory-fraction", type=float, default=0.8)
  ap.add_argument("--repeats", type=int, default=3)
  ap.add_argument("--no-sequential", action="store_true", help="skip the sequential loop")
  ap.add_argument("--out", default="")
  args = ap.parse_args()
  backend = jax.default_backend()
  if args.dtype == "auto":
    args.dtype = "float32" if backend == "cpu" else "bfloat16"
  config, run_steps = make_config(args)
  tc = config.train
  total_steps = args.total_steps or run_steps
  devices = jax.local_devices()
  dev = devices[0]
  num_classes = 5

  model = models.build(config.model, num_classes)
  tx = ts.make_optimizer(config.optim, total_steps)
  epoch = ts.make_train_epoch(model, tx, config)
  num_clips = max(CASME2_CLIPS, (args.folds + 1) * tc.batch_size)
  data, folds = make_inputs(config, args.folds, num_clips, np.random.default_rng(0))
  s, t = config.data.image_size, config.data.num_frames
  init = ts.make_init(model, tx, np.zeros((1, t, s, s, 3), np.uint8))
  states = ts.init_fold_states(init, [jax.random.fold_in(jax.random.PRNGKey(0), f)
                                      for f in range(args.folds)])
  one = lambda tree, f: jax.tree.map(lambda x: x[f], tree)  # noqa: E731
  device_data = jax.device_put(data, dev)

  # 1. One fold's program: memory, FLOPs per step, compile time.
  t0 = time.perf_counter()
  one_fold = jax.jit(epoch).lower(one(states, 0), one(folds, 0), device_data).compile()
  compile_one = time.perf_counter() - t0
  one_step_cfg = config.copy_and_resolve_references()
  one_step_cfg.train.steps_per_epoch = 1
  step_flops = flops_of(jax.jit(ts.make_train_epoch(model, tx, one_step_cfg)).lower(
      one(states, 0), one(folds, 0), device_data).compile())
  limit = device_memory_bytes(dev)
  data_bytes = sum(x.nbytes for x in jax.tree.leaves(data))
  per_fold = max(program_bytes(one_fold) - data_bytes, 1)
  fit = max(1, int((args.memory_fraction * limit - data_bytes) // per_fold))
  need = math.ceil(args.folds / len(devices))
  fpd = args.folds_per_device or min(fit, need)

  # Fold-parallel program; halve the folds per device while XLA says it does not fit.
  while True:
    layout = parallel.make_layout(args.folds, folds_per_device=fpd)
    slots = layout.slots_per_process
    groups = layout.num_groups
    ids = layout.local_folds(0)
    pad = lambda tree: jax.tree.map(  # noqa: E731
        lambda x: np.stack([x[i] if i >= 0 else x[0] for i in ids]), tree)
    fn = parallel.fold_parallel(epoch, layout, fold_args=(0, 1))
    par_args = (parallel.shard_folds(layout, pad(states)), parallel.shard_folds(layout, pad(folds)),
                parallel.replicate(layout, data))
    t0 = time.perf_counter()
    compiled = fn.lower(*par_args).compile()
    compile_par = time.perf_counter() - t0
    used = program_bytes(compiled)
    if args.folds_per_device or fpd == 1 or used <= args.memory_fraction * limit:
      break
    fpd = max(1, fpd // 2)

  jax.block_until_ready(compiled(*par_args))
  par_s = timed(lambda: compiled(*par_args), args.repeats)
  steps = tc.steps_per_epoch
  real_slots = int(np.sum(ids >= 0))
  par_steps_per_s = steps / par_s  # every fold of the group advances this many steps per second
  run_groups = math.ceil(args.project_folds / layout.slots_per_group)
  par_total = run_groups * total_steps / par_steps_per_s + compile_par
  peak = matmul_rate(jnp.bfloat16 if args.dtype == "bfloat16" else jnp.float32)
  achieved = step_flops * real_slots * steps / par_s

  seq_row = ""
  if not args.no_sequential:
    args_one = (one(states, 0), one(folds, 0), device_data)
    jax.block_until_ready(one_fold(*args_one))
    seq_s = timed(lambda: one_fold(*args_one), args.repeats)
    seq_total = args.project_folds * total_steps * seq_s / steps + compile_one
    seq_row = (f"| sequential loop (one fold at a time, 1 device) | 1 | "
               f"{seq_s:.3g} | {steps / seq_s:.3g} | {steps * tc.batch_size / seq_s:.1f} | "
               f"{step_flops * steps / seq_s / 1e12:.3g} | "
               f"{step_flops * steps / seq_s / peak:.1%} | {fmt_s(seq_total)} | "
               f"{compile_one:.0f} |")
    speedup = f"{seq_total / par_total:.1f}x"
  if args.folds < args.project_folds:
    note = (f"Only {args.folds} of the {args.project_folds} folds were built and timed; the "
            "projection assumes the other fold groups run at the same speed.")
  else:
    note = ""
  lines = [
      "# Paper-scale LOSO training (CASME II shapes)", "",
      f"Device: **{dev.platform}: {dev.device_kind} x{len(devices)}** "
      f"({platform.machine()}, {os.cpu_count()} host cores), jax {jax.__version__}. Memory "
      f"limit per device: {limit / 2**30:.1f} GiB. Dense {args.dtype} matmul "
      f"({'2048' if backend == 'cpu' else '8192'}^2, jitted): **{peak / 1e12:.3g} TFLOP/s**.",
      f"Command: `python -m benchmarks.paper_scale {' '.join(sys.argv[1:])}`.", "",
      f"Shapes: {args.folds} folds, batch {tc.batch_size} clips of T = {t} frames at {s}x{s}, "
      f"ResNet-18 ICE + FFE, compute dtype {args.dtype}, full objective "
      f"({', '.join(k for k in config.loss if k.startswith('lambda_') and config.loss[k])}); "
      f"{steps} steps per timed epoch (median of {args.repeats}); projected run: "
      f"{total_steps} steps per fold. FLOPs: {step_flops / 1e9:.1f} GFLOP per step of one fold "
      f"({step_flops / tc.batch_size / 1e9:.2f} per clip; XLA's count of one compiled step).",
      "", f"Folds per device: {fpd} (one fold's program {per_fold / 2**30:.2f} GiB + data "
      f"{data_bytes / 2**30:.2f} GiB; {fit} would fit in {args.memory_fraction:.0%} of the "
      f"limit; fold-parallel program: {used / 2**30:.2f} GiB per device): the {args.folds} "
      f"folds timed here train in {groups} group(s), the projected {args.project_folds} in "
      f"{run_groups}.", "",
      f"| program | folds trained at once | s per epoch ({steps} steps) | steps/s (each fold) | "
      f"clips/s | TFLOP/s | utilisation | projected LOSO run ({args.project_folds} folds x "
      f"{total_steps} steps) | compile s |",
      "|---|---|---|---|---|---|---|---|---|",
      f"| fold-parallel ({len(devices)} device(s) x "
      f"{f'{fpd} folds vmapped' if fpd > 1 else '1 fold, not vmapped'}) | {real_slots} "
      f"| {par_s:.3g} | {par_steps_per_s:.3g} | "
      f"{real_slots * steps * tc.batch_size / par_s:.1f} | {achieved / 1e12:.3g} | "
      f"{achieved / peak:.1%} | **{fmt_s(par_total)}** | {compile_par:.0f} |"]
  if seq_row:
    lines += [seq_row, "", f"Fold-parallel vs the sequential loop, whole run: **{speedup}**."]
  if note:
    lines += ["", note]
  text = "\n".join(lines) + "\n"
  print(text)
  if args.out:
    with open(args.out, "w") as f:
      f.write(text)


if __name__ == "__main__":
  main()
