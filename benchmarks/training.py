"""LOSO training speed: fold-parallel (one pmap/vmap program) vs a sequential per-fold loop.

    python -m benchmarks.training --out docs/benchmarks_training.md          # ~15 min on 2 cores
    python -m benchmarks.training --quick                                     # smoke run

Runs unchanged on CPU, GPU and TPU (it uses whatever `jax.devices()` returns; the device kind is
printed next to every figure). Everything is measured in this one process, so ratios compare like
with like on a shared, noisy machine. What is measured, per configuration:

1. **Fold-parallel vs sequential.** The same compiled one-fold training epoch (`lax.scan` over
   the configuration's steps, the full CMNet objective) lifted in two ways:
   *fold-parallel* = every fold in one program (`parallel.fold_parallel`: pmap over the local
   devices, vmap over the folds each holds); *sequential* = the one-fold program called once per
   fold, one after another (what PyTorch MER code does). Wall time per LOSO epoch after
   compilation (median of `--repeats`), and the ratio.
2. **Throughput and utilisation.** Training clips/s; achieved FLOP/s = FLOPs executed per epoch
   divided by its wall time; divided by this machine's dense float32 matmul FLOP/s (a jitted
   matmul at default precision, 2048^2 on CPU and 8192^2 elsewhere, measured here) = the
   utilisation ratio. FLOPs executed = XLA's cost analysis of ONE compiled training step (the
   epoch program built with one step) x steps per epoch x folds: XLA counts the body of a
   `lax.scan` (a while loop) once, not once per trip, so the count of the compiled epoch alone is
   one step's (both counts are printed).
3. **Compile time** of each program, **peak host memory** (ru_maxrss) of this process, and how
   the fold-parallel epoch time grows with the number of folds and with T.

Inputs are random uint8 clips of the configured size (speed does not depend on the pixels).
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from cmnet_jax import models, parallel
from cmnet_jax import train_step as ts
from configs import common


def default_config(quick: bool):
  """The synthetic default (configs/synthetic.py), with few steps per epoch."""
  from configs import synthetic
  c = synthetic.get_config()
  with c.unlocked():
    c.train.steps_per_epoch = 2 if quick else 5
  return c


def paper_config(quick: bool):
  """Paper-scale model (ResNet-18 encoders, 112x112), one step, small batch."""
  c = common.base_config("casme2", "paper")
  c.data.image_size = 64 if quick else 112
  c.train.batch_size = 2
  c.train.steps_per_epoch = 1
  return c


def make_inputs(config, num_folds: int, num_clips: int, rng: np.random.Generator):
  t, s = config.data.num_frames, config.data.image_size
  copies = config.data.train_jitter_copies
  device_data = ts.DeviceData(
      train_frames=rng.integers(0, 256, (num_clips, copies, t, s, s, 3), dtype=np.uint8),
      train_apex=np.full((num_clips, copies), t // 2, np.int32),
      eval_frames=rng.integers(0, 256, (num_clips, t, s, s, 3), dtype=np.uint8),
      eval_apex=np.full((num_clips,), t // 2, np.int32),
      labels=rng.integers(0, 5, (num_clips,)).astype(np.int32),
      train_intensity=np.zeros((num_clips, copies, t), np.float32),
      eval_intensity=np.zeros((num_clips, t), np.float32))
  subjects = np.arange(num_clips) % (num_folds + 1)  # subject F is never held out
  weights = np.stack([(subjects != f) / np.sum(subjects != f) for f in range(num_folds)])
  max_test = max(int(np.sum(subjects == f)) for f in range(num_folds))
  test_ids = np.zeros((num_folds, max_test), np.int32)
  test_mask = np.zeros((num_folds, max_test), bool)
  for f in range(num_folds):
    ids = np.flatnonzero(subjects == f)
    test_ids[f, :len(ids)], test_mask[f, :len(ids)] = ids, True
  return device_data, ts.FoldData(weights.astype(np.float32), test_ids, test_mask)


def timed(fn, *args, repeats: int):
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def matmul_flops_per_s(repeats: int = 5) -> float:
  n = 2048 if jax.default_backend() == "cpu" else 8192  # large enough to reach the peak
  a = jnp.asarray(np.random.default_rng(0).normal(size=(n, n)), jnp.float32)
  f = jax.jit(lambda a: a @ a)
  jax.block_until_ready(f(a))
  return 2 * n ** 3 / timed(f, a, repeats=repeats)


class Run:
  """One configuration's fold-parallel and sequential programs on the same inputs."""

  def __init__(self, config, num_folds: int):
    self.config, self.num_folds = config, num_folds
    self.model = models.build(config.model, 5)
    self.tx = ts.make_optimizer(config.optim, 10 * config.train.steps_per_epoch)
    self.epoch = ts.make_train_epoch(self.model, self.tx, config)
    # Every fold trains on F >= batch clips (F+1 subjects of batch-size clips each).
    num_clips = (num_folds + 1) * config.train.batch_size
    self.data, self.folds = make_inputs(config, num_folds, num_clips, np.random.default_rng(0))
    s, t = config.data.image_size, config.data.num_frames
    self.sample = np.zeros((1, t, s, s, 3), np.uint8)
    rngs = np.stack([np.asarray(jax.random.fold_in(jax.random.PRNGKey(0), f))
                     for f in range(num_folds)])
    self.states = ts.init_fold_states(ts.make_init(self.model, self.tx, self.sample), rngs)

  def fold_parallel(self, repeats: int) -> dict:
    layout = parallel.make_layout(self.num_folds)
    fn = parallel.fold_parallel(self.epoch, layout, fold_args=(0, 1))
    state = parallel.shard_folds(layout, self.states)
    folds = parallel.shard_folds(layout, self.folds)
    data = parallel.replicate(layout, self.data)
    t0 = time.perf_counter()
    jax.block_until_ready(fn(state, folds, data))  # compile + first run
    first = time.perf_counter() - t0
    per_epoch = timed(fn, state, folds, data, repeats=repeats)
    return dict(epoch_s=per_epoch, compile_s=max(first - per_epoch, 0.0),
                devices=len(layout.devices), folds_per_device=layout.folds_per_device)

  def sequential(self, repeats: int) -> dict:
    fn = jax.jit(self.epoch)
    one = lambda f: (jax.tree.map(lambda x: x[f], self.states),  # noqa: E731
                     jax.tree.map(lambda x: x[f], self.folds))
    data = jax.device_put(self.data)
    args = [one(f) for f in range(self.num_folds)]
    t0 = time.perf_counter()
    lowered = fn.lower(*args[0], data).compile()
    compile_s = time.perf_counter() - t0

    def loop():
      return [lowered(s, f, data) for s, f in args]

    jax.block_until_ready(loop())
    step = self.step_flops(args[0], data)
    return dict(epoch_s=timed(loop, repeats=repeats), compile_s=compile_s,
                flops=step * self.config.train.steps_per_epoch * self.num_folds,
                step_flops=step, scan_count=_flops(lowered))

  def step_flops(self, fold_args, data) -> float:
    """XLA's FLOP count of one executed training step of one fold.

    The epoch is a `lax.scan` over steps, and XLA's cost analysis counts a while loop's body once
    (not once per trip): compile the same epoch with one step and count that.
    """
    one_step = self.config.copy_and_resolve_references()
    one_step.train.steps_per_epoch = 1
    epoch = ts.make_train_epoch(self.model, self.tx, one_step)
    return _flops(jax.jit(epoch).lower(*fold_args, data).compile())


def _flops(compiled) -> float:
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0]
  return float(cost.get("flops", float("nan"))) if cost else float("nan")


def conv_rows(quick: bool, repeats: int) -> list[str]:
  """Gradient of one 3x3 conv layer (16 -> 32 channels, 32x32) both ways, 1 fold and vmapped."""
  from cmnet_jax.models.encoders import im2col_conv
  folds, n = (2, 8) if quick else (8, 36)
  dn = ("NHWC", "HWIO", "NHWC")
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(folds, n, 32, 32, 16)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(folds, 3, 3, 16, 32)) * 0.1, jnp.float32)
  impls = {"xla": jax.lax.conv_general_dilated, "im2col": im2col_conv}
  rows, times = [], {}
  for name, conv in impls.items():
    f = lambda x, w, conv=conv: conv(x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=dn)  # noqa: E731
    loss = lambda x, w, f=f: jnp.sum(f(x, w) ** 2)  # noqa: E731
    one = jax.jit(jax.grad(loss, argnums=(0, 1)))
    many = jax.jit(jax.vmap(jax.grad(loss, argnums=(0, 1))))
    jax.block_until_ready(one(x[0], w[0]))
    jax.block_until_ready(many(x, w))
    times[name] = (timed(one, x[0], w[0], repeats=repeats), timed(many, x, w, repeats=repeats))
  for i, label in enumerate(("1 fold", f"{folds} folds, vmapped (per-fold kernels)")):
    xla, mine = times["xla"][i], times["im2col"][i]
    rows.append(f"| {label} | {n} | {xla * 1e3:.1f} | {mine * 1e3:.1f} | **{xla / mine:.1f}x** |")
  return rows


def _pct(ratio: float) -> str:
  """2.0%, and two significant digits below 1% (a GPU's tiny ratios: 0.0096%)."""
  return f"{ratio:.1%}" if ratio >= 0.01 else f"{100 * ratio:.2g}%"


def _command() -> str:
  flags = os.environ.get("XLA_FLAGS", "")
  return (f"{'XLA_FLAGS=' + flags + ' ' if flags else ''}python -m benchmarks.training "
          f"{' '.join(sys.argv[1:])}").strip()


def peak_rss_mib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--out", default="", help="also write the markdown tables here")
  ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
  ap.add_argument("--repeats", type=int, default=3)
  ap.add_argument("--sections", default="conv,loso,paper,scaling",
                  help="comma-separated subset of conv, loso (synthetic default), paper, scaling")
  args = ap.parse_args()
  q = args.quick
  dev = jax.devices()[0]
  kind = f"{dev.platform}: {dev.device_kind} x{len(jax.devices())}"
  peak = matmul_flops_per_s()
  lines = [
      "# LOSO training speed: fold-parallel vs sequential", "",
      f"Device: **{kind}** ({platform.processor() or platform.machine()}, "
      f"{os.cpu_count()} host cores), jax {jax.__version__}. "
      f"Dense float32 matmul ({'2048' if dev.platform == 'cpu' else '8192'}^2, jitted, default precision): **{peak / 1e9:.1f} GFLOP/s**. "
      f"Command: `{_command()}`. "
      f"Times are medians of {args.repeats} runs after compilation.", ""]

  lines += ["## 0. Convolution: XLA's op vs im2col (`model.conv_impl`)", "",
            "Gradient (input and kernel) of one 3x3 convolution, 16 -> 32 channels, 32x32 frames.",
            "", "| case | frames per fold | xla ms | im2col ms | im2col speed-up |",
            "|---|---|---|---|---|"]
  sections = set(args.sections.split(","))
  if "conv" in sections:
    lines += conv_rows(q, args.repeats)
  print("\n".join(lines), flush=True)  # the header too: a run cut short still says where it ran
  lines += ["", "## 1-2. One LOSO epoch: fold-parallel vs sequential", "",
            "| configuration | folds | steps/epoch | batch/fold | fold-parallel s/epoch | "
            "sequential s/epoch | speed-up | clips/s (parallel) | GFLOP/s (parallel) | "
            "utilisation (parallel) | utilisation (sequential) | compile s (parallel / sequential) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
  cases = [("synthetic default (small_cnn", default_config(q), 4 if q else 8),
           ("paper scale (ResNet-18", paper_config(q), 2)]
  flop_notes = []
  for name, config, folds in cases:
    if ("loso" if name.startswith("synthetic") else "paper") not in sections:
      continue
    name += f", {config.data.image_size}x{config.data.image_size}, T={config.data.num_frames})"
    run = Run(config, folds)
    par, seq = run.fold_parallel(args.repeats), run.sequential(args.repeats)
    # Useful work is the same either way (vmap adds no FLOPs): XLA's count for one fold's
    # training step x steps x folds (padded slots, if any, are not counted).
    par["flops"] = seq["flops"]
    steps, batch = config.train.steps_per_epoch, config.train.batch_size
    clips = folds * steps * batch
    flop_notes.append(
        f"- {name}: {seq['step_flops'] / 1e9:.2f} GFLOP per training step of one fold "
        f"({seq['step_flops'] / batch / 1e9:.2f} per clip); XLA's count of the compiled "
        f"{steps}-step epoch: {seq['scan_count'] / 1e9:.2f} GFLOP (the scan body counted once).")
    lines.append(
        f"| {name}, {par['devices']} devices x {par['folds_per_device']} folds | {folds} | {steps} | {batch} | {par['epoch_s']:.3g} | {seq['epoch_s']:.3g} | "
        f"**{seq['epoch_s'] / par['epoch_s']:.2f}x** | {clips / par['epoch_s']:.1f} | "
        f"{par['flops'] / par['epoch_s'] / 1e9:.1f} | "
        f"{_pct(par['flops'] / par['epoch_s'] / peak)} | {_pct(seq['flops'] / seq['epoch_s'] / peak)} | "
        f"{par['compile_s']:.0f} / {seq['compile_s']:.0f} |")
    print("\n".join(lines[-1:]), flush=True)

  if flop_notes:
    lines += ["", "FLOPs executed (XLA cost analysis of one compiled step):", ""] + flop_notes
  lines += ["", "## 3. Scaling of the fold-parallel epoch (synthetic default model)", "",
            "| folds | T | s/epoch (2 steps) | s per fold-epoch | compile s |", "|---|---|---|---|---|"]
  fold_counts = () if "scaling" not in sections else (1, 4) if q else (1, 4, 13, 26)
  for folds in fold_counts:
    config = default_config(True)  # 2 steps per epoch
    run = Run(config, folds)
    par = run.fold_parallel(1)
    lines.append(f"| {folds} | {config.data.num_frames} | {par['epoch_s']:.3g} | "
                 f"{par['epoch_s'] / folds:.3g} | {par['compile_s']:.0f} |")
    print(lines[-1], flush=True)
  for t in () if "scaling" not in sections else (5, 9) if q else (5, 9, 17):
    config = default_config(True)
    config.data.num_frames = t
    run = Run(config, 4)
    par = run.fold_parallel(1)
    lines.append(f"| 4 | {t} | {par['epoch_s']:.3g} | {par['epoch_s'] / 4:.3g} | "
                 f"{par['compile_s']:.0f} |")
    print(lines[-1], flush=True)
  lines += ["", f"Peak host memory of this benchmark process: {peak_rss_mib():.0f} MiB "
            "(ru_maxrss; the default run's own peak is in docs/benchmarks.md).", ""]
  text = "\n".join(lines)
  print(text)
  if args.out:
    with open(args.out, "w") as f:
      f.write(text)


if __name__ == "__main__":
  main()
