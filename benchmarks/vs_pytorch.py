"""cmnet_jax's training step vs a PyTorch implementation of the same network and step.

    python -m benchmarks.vs_pytorch --torch-python PY --torch-reference torch_cmnet.py \
        --out docs/benchmarks_vs_pytorch.md
    python -m benchmarks.vs_pytorch ... --networks small --sittings 3 --folds 1 --steps 5

The PyTorch reference is a one-file PyTorch implementation of the same CMNet network and training
step (ICE + FFE encoders with GroupNorm, squeeze/extend fusion, LSTM, classifier; CE + 0.1 ID +
0.1 Wilcoxon; AdamW), not part of this repository: pass its path with `--torch-reference` and a
Python that has torch with `--torch-python` (torch is not a dependency of cmnet_jax). It must
accept `--encoder --image-size --frames --batch --folds --steps --threads` and print one JSON line
with `clips_per_second` (timed steps only, after warm-up steps per fold).

Both sides train on random uint8 clips held in memory, folds one after another (the reference's
way of running LOSO), and the figure is training clips per second = folds x steps x batch / timed
seconds. Networks:

- `small`: cmnet_jax's small_cnn (widths 16, 32, 64; first conv stride 1, then 2; GroupNorm;
  global average pool), 64x64, 4 folds x 20 steps (reference encoder `small_cnn_s1`).
- `resnet18`: ResNet-18 ICE + FFE (torchvision layout, GroupNorm), 112x112, 2 folds x 5 steps.

Both: batch 8 clips of T = 9 frames, 5 classes, CE + 0.1 ID + 0.1 Wilcoxon (cmnet_jax with
`loss.preset='paper'` and `id_strategy='all'`: the reference's p-value hinge, no order term, every
other frame a negative), AdamW, ICE on the clips and their positive views in one call.

cmnet_jax is measured in two forms (see `VARIANTS`): its own training step, which does more work
around the network than the reference (onset-difference input, so the positive views are made for
each frame and its onset reference; crop, flip and rotation of every clip; hue and saturation
jitter and a 5x5 blur in the views), and the step reduced to the reference's work (raw frames, no
clip augmentation, brightness/contrast jitter, grayscale and a 3x3 blur in the views). Each
cmnet_jax form runs as the sequential per-fold loop (`jit` of one fold's epoch, called per fold)
and fold-parallel (all folds vmapped in one program on one device).

The machine is shared, so the sides alternate in sittings (cmnet_jax, PyTorch, cmnet_jax, ...)
within one invocation, every sitting is reported with the machine load (1-minute load average
before and after), and the summary compares medians and per-sitting ratios.
"""
from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time

import jax
import numpy as np

from cmnet_jax import models, parallel
from cmnet_jax import train_step as ts
from configs import common

NETWORKS = {
    # name: (model scale, image size, folds, steps, reference encoder)
    "small": ("small", 64, 4, 20, "small_cnn_s1"),
    "resnet18": ("paper", 112, 2, 5, "resnet18"),
}
BATCH, FRAMES, CLASSES = 8, 9, 5

# cmnet_jax forms. 'step': its training step as configured by default (augmentations and input).
# 'matched': the reference's work around the network (see the module docstring).
VARIANTS = {
    "step": "cmnet_jax's step: onset-difference input (views of each frame and of its onset), "
            "crop/flip/rotation per clip, views with brightness/contrast/saturation/hue jitter, "
            "grayscale, 5x5 blur",
    "matched": "cmnet_jax reduced to the reference's work: raw frames, no clip augmentation, views "
               "with brightness/contrast jitter, grayscale, 3x3 blur",
}
REFERENCE_WORK = ("PyTorch reference: raw frames, no clip augmentation, views with "
                  "brightness/contrast jitter, grayscale p=0.2, 3x3 blur; ICE on clip + views "
                  "in one call; constant learning rate; 3 untimed warm-up steps per fold")


def make_config(network: str, variant: str, steps: int):
  scale, size, _, _, _ = NETWORKS[network]
  c = common.base_config("synthetic", scale)
  c.data.image_size, c.data.num_frames = size, FRAMES
  c.model.pool_grid = 1                   # global average pool, as the reference
  c.train.batch_size, c.train.steps_per_epoch = BATCH, steps
  # CE + 0.1 ID ('all' negatives) + 0.1 Wilcoxon (p-value hinge), no order term: the reference's.
  c.loss.preset, c.loss.id_strategy = "paper", "all"
  c.loss.lambda_ce, c.loss.lambda_id, c.loss.lambda_w, c.loss.lambda_order = 1.0, 0.1, 0.1, 0.0
  if variant == "matched":
    c.model.input_mode = "raw"
    c.augment.crop_padding, c.augment.flip, c.augment.max_rotation_deg = 0, False, 0.0
    c.augment.hue, c.augment.saturation, c.augment.blur_kernel = 0.0, 0.0, 3
  elif variant != "step":
    raise ValueError(f"unknown variant {variant!r}; expected one of {sorted(VARIANTS)}")
  return c


class JaxSide:
  """One cmnet_jax form on one network: compiled once, timed in every sitting."""

  def __init__(self, network: str, variant: str, folds: int, steps: int, fold_parallel: bool,
               conv_impl: str = "auto"):
    from benchmarks.training import make_inputs  # pylint: disable=g-import-not-at-top
    self.folds, self.steps, self.fold_parallel = folds, steps, fold_parallel
    config = make_config(network, variant, steps)
    config.model.conv_impl = conv_impl
    model = models.build(config.model, CLASSES)
    tx = ts.make_optimizer(config.optim, 10 * steps)
    epoch = ts.make_train_epoch(model, tx, config)
    num_clips = max(64, (folds + 1) * BATCH)  # the reference samples from 64 clips
    self.data, fold_data = make_inputs(config, folds, num_clips, np.random.default_rng(0))
    s = config.data.image_size
    init = ts.make_init(model, tx, np.zeros((1, FRAMES, s, s, 3), np.uint8))
    rngs = [jax.random.fold_in(jax.random.PRNGKey(0), f) for f in range(folds)]
    states = ts.init_fold_states(init, rngs)
    t0 = time.perf_counter()
    if fold_parallel:
      layout = parallel.make_layout(folds, num_devices=1)
      fn = parallel.fold_parallel(epoch, layout, fold_args=(0, 1))
      self.args = (parallel.shard_folds(layout, states), parallel.shard_folds(layout, fold_data),
                   parallel.replicate(layout, self.data))
      self.run = lambda: fn(*self.args)  # noqa: E731
      jax.block_until_ready(self.run())  # compile + warm-up
    else:
      fn = jax.jit(epoch)
      data = jax.device_put(self.data)
      per_fold = [(jax.tree.map(lambda x, f=f: x[f], states),
                   jax.tree.map(lambda x, f=f: x[f], fold_data)) for f in range(folds)]
      compiled = fn.lower(*per_fold[0], data).compile()
      self.run = lambda: [compiled(st, fd, data) for st, fd in per_fold]  # noqa: E731
      jax.block_until_ready(compiled(*per_fold[0], data))  # warm-up
    self.setup_s = time.perf_counter() - t0

  def sitting(self) -> float:
    t0 = time.perf_counter()
    jax.block_until_ready(self.run())
    return self.folds * self.steps * BATCH / (time.perf_counter() - t0)


def torch_sitting(args, network: str) -> dict:
  _, size, folds, steps, encoder = NETWORKS[network]
  cmd = [args.torch_python, args.torch_reference, "--encoder", encoder, "--image-size", str(size),
         "--frames", str(FRAMES), "--batch", str(BATCH), "--folds", str(args.folds or folds),
         "--steps", str(args.steps or steps), "--threads", str(args.threads)]
  out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
  return json.loads(out.strip().splitlines()[-1])


def load() -> float:
  return os.getloadavg()[0]


def cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def versions() -> str:
  import flax  # pylint: disable=g-import-not-at-top
  import jaxlib  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  return (f"Python {platform.python_version()}, jax {jax.__version__}, "
          f"jaxlib {jaxlib.__version__}, flax {flax.__version__}, optax {optax.__version__}")


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--torch-python", required=True, help="a Python with torch installed")
  ap.add_argument("--torch-reference", required=True,
                  help="the PyTorch implementation of the same network and step (a script)")
  ap.add_argument("--networks", default="small,resnet18", help="comma-separated: small, resnet18")
  ap.add_argument("--variants", default="step,matched",
                  help=f"cmnet_jax forms, comma-separated: {', '.join(VARIANTS)}")
  ap.add_argument("--no-fold-parallel", action="store_true",
                  help="time only the sequential per-fold loop of cmnet_jax")
  ap.add_argument("--sittings", type=int, default=2, help="alternating sittings per side")
  ap.add_argument("--conv-impls", default="auto",
                  help="comma-separated model.conv_impl values to time (e.g. auto,onednn)")
  ap.add_argument("--folds", type=int, default=0, help="override the network's folds")
  ap.add_argument("--steps", type=int, default=0, help="override the network's steps per fold")
  ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                  help="PyTorch intra-op threads (XLA uses every core); default: all cores")
  ap.add_argument("--out", default="", help="also write the markdown here")
  args = ap.parse_args()

  lines = ["# cmnet_jax vs a PyTorch implementation of the same training step", "",
           f"- Date: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}",
           f"- Machine: {cpu_model()}, {os.cpu_count()} cores, {platform.system()} "
           f"{platform.machine()}; JAX device {jax.devices()[0].device_kind} "
           f"x{len(jax.devices())}",
           f"- cmnet_jax: {versions()}",
           f"- Command: `python -m benchmarks.vs_pytorch "
           f"{' '.join(shlex.quote(a) for a in sys.argv[1:])}`",
           f"- Load before: `{os.popen('uptime').read().strip()}`", "",
           "What each side does around the network (batch 8 clips of 9 frames, CE + 0.1 ID + "
           "0.1 Wilcoxon, AdamW):", ""]
  variants = [v for v in args.variants.split(",") if v]
  lines += [f"- cmnet_jax `{v}`: {VARIANTS[v]}." for v in variants]
  lines += [f"- {REFERENCE_WORK}.", "",
            "| network | sitting | side | clips/s | load before / after |", "|---|---|---|---|---|"]
  print("\n".join(lines), flush=True)
  summary = []
  for network in args.networks.split(","):
    _, _, folds, steps, _ = NETWORKS[network]
    folds, steps = args.folds or folds, args.steps or steps
    sides = {}
    for v, impl in itertools.product(variants, args.conv_impls.split(",")):
      for fp in ((False,) if args.no_fold_parallel else (False, True)):
        name = (f"cmnet_jax {v}{'' if impl == 'auto' else ', conv_impl=' + impl}, "
                f"{'fold-parallel (vmap)' if fp else 'sequential'}")
        sides[name] = JaxSide(network, v, folds, steps, fp, impl)
        print(f"<!-- {network}: {name} compiled and warmed up in {sides[name].setup_s:.0f} s -->",
              flush=True)
    results = {name: [] for name in sides}
    results["PyTorch, sequential"] = []
    torch_info = {}
    for sitting in range(1, args.sittings + 1):
      for name in list(sides) + ["PyTorch, sequential"]:
        before = load()
        if name.startswith("PyTorch"):
          torch_info = torch_sitting(args, network)
          rate = float(torch_info["clips_per_second"])
        else:
          rate = sides[name].sitting()
        results[name].append(rate)
        lines.append(f"| {network} ({folds} folds x {steps} steps) | {sitting} | {name} | "
                     f"{rate:.2f} | {before:.1f} / {load():.1f} |")
        print(lines[-1], flush=True)
    torch_rates = results["PyTorch, sequential"]
    for name, rates in results.items():
      if name.startswith("PyTorch"):
        continue
      pairs = [a / b for a, b in zip(rates, torch_rates)]
      summary.append(
          f"| {network} | {name} | {statistics.median(rates):.2f} "
          f"({min(rates):.2f}-{max(rates):.2f}) | {statistics.median(torch_rates):.2f} "
          f"({min(torch_rates):.2f}-{max(torch_rates):.2f}) | "
          f"**{statistics.median(rates) / statistics.median(torch_rates):.2f}x** | "
          f"{min(pairs):.2f}-{max(pairs):.2f}x |")
    lines.append(f"<!-- torch reference: {json.dumps(torch_info)} -->")
  lines += ["", "| network | cmnet_jax form | cmnet_jax clips/s, median (range) | PyTorch "
            "clips/s, median (range) | ratio of medians | ratio per sitting |",
            "|---|---|---|---|---|---|"] + summary
  lines += ["", f"Load after: `{os.popen('uptime').read().strip()}`", ""]
  text = "\n".join(lines)
  print("\n".join(lines[-len(summary) - 5:]))
  if args.out:
    with open(args.out, "w") as f:
      f.write(text)


if __name__ == "__main__":
  main()
