"""Loss ablation on the synthetic default: is the intensity pathway alive, and does it help?

    python -m experiments.ablation --root runs/ablation                 # the whole grid, resumable
    python -m experiments.ablation --root runs/ablation --deadline-min 50
    python -m experiments.ablation --root runs/ablation --summarize --out docs/ablation.md

Every run is `train.train_and_evaluate` on `configs/synthetic.py` with one arm's loss settings,
one motion amplitude and one training seed (`train.seed`: initialisation, batches,
augmentations; the synthetic faces are the same in every run, `synthetic.seed=0`). Each run has
its own workdir `<root>/<amplitude>/<arm>/seed<k>`; a run whose `results.json` exists is skipped, so
the command resumes where it stopped, and the grid can be shared between machines by copying
the run folders. Runs are taken in priority order (see `grid`) so that a time-boxed call
(`--deadline-min`) finishes the most informative comparisons first. The generated faces are shared
per amplitude (`<root>/data/<amplitude>`), and XLA's persistent compilation cache
(`<root>/.jax_cache`) lets runs that differ only in seed or amplitude skip compilation.

`--summarize` reads every finished run and prints (and writes, with `--out`) one table: per
amplitude and arm, the mean and sample standard deviation over seeds of LOSO accuracy, UF1, UAR
and the intensity diagnostics of `DIAGNOSTICS` (saturation, within-clip spread, gate ablation,
active rank-sum hinge, per-clip Spearman against the true intensity; docs/method.md).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Iterator, NamedTuple

from cmnet_jax.workdir import Workdir

# Arms: settings on top of configs/synthetic.py (whose objective is 'default').
_CE_ONLY = {"loss.lambda_id": 0.0, "loss.lambda_w": 0.0, "loss.lambda_order": 0.0}
ARMS: dict[str, dict] = {
    "ce": dict(_CE_ONLY),                    # cross-entropy only
    "paper": {"loss.preset": "paper"},       # CMNet as the paper states it (p-value hinge)
    "default": {},                           # our objective and gate, as configs/synthetic.py
    # A perfect intensity: the generator's true intensity replaces s_t in the fusion.
    "oracle": {**_CE_ONLY, "model.intensity_source": "oracle"},
    # The position prior: a fixed onset -> apex -> offset tent (apex at the middle index) in the
    # fusion of every clip. A learned intensity is worth something only where it beats this arm.
    "tent": {**_CE_ONLY, "model.intensity_source": "tent"},
    # No gate at all (1 for every frame): tells the position prior from merely fixing the gate.
    "constant": {**_CE_ONLY, "model.intensity_source": "constant"},
    # Issue 22 candidates: the learned s rescaled to [0, 1] per clip in the fusion.
    "default-minmax": {"model.gate_norm": "minmax"},
    "ce-minmax": {**_CE_ONLY, "model.gate_norm": "minmax"},
    # Issue 22, the scale term: s_t against the prototype mean by value (losses/scale.py).
    "scale": {"loss.lambda_scale": 1.0},
    "scale-minmax": {"loss.lambda_scale": 1.0, "model.gate_norm": "minmax"},
    "ce-scale": {**_CE_ONLY, "loss.lambda_scale": 1.0},
    # Issue 22, round 3: the temporal softmax gate (non-apex frames suppressed; now the
    # configs' default, so its runs are 'default') and the brightness-matched onset
    # difference (illumination drift no longer a clock).
    "gain": {"model.difference_gain": True},
    "softmax-gain": {"model.gate_norm": "softmax", "model.difference_gain": True},
    "softmax-scale": {"model.gate_norm": "softmax", "loss.lambda_scale": 1.0},
    "softmax-t0.3": {"model.gate_norm": "softmax", "model.gate_temperature": 0.3},
    # Teacher forcing: in training the fusion sees the (sharpened) prototype at the annotated
    # apex, in evaluation the learned s.
    "softmax-teacher": {"model.gate_norm": "softmax", "model.train_gate": "prototype"},
    # The softmax gate's controls: the position prior and the true intensity sharpened alike.
    "tent-softmax": {**_CE_ONLY, "model.intensity_source": "tent", "model.gate_norm": "softmax"},
    "oracle-softmax": {**_CE_ONLY, "model.intensity_source": "oracle",
                       "model.gate_norm": "softmax"},
    # Candidates the default was chosen from (on another synthetic seed; docs/results.md).
    "w0.1-o0.1": {"loss.lambda_w": 0.1, "loss.lambda_order": 0.1},
    "w0.1-o0.5": {"loss.lambda_w": 0.1, "loss.lambda_order": 0.5},
    "w0.5-o0.5": {"loss.lambda_w": 0.5, "loss.lambda_order": 0.5},
    "w0.5-o1": {"loss.lambda_w": 0.5, "loss.lambda_order": 1.0},
    # The earlier ID strategies and segment-wise test, on the default objective.
    "default-uniform": {"loss.id_strategy": "uniform"},
    "default-split": {"loss.w_segments": "split"},
}
# Every arm but 'default' names its fusion gate: the earlier arms ran with the plain product
# e_t = f_t * extend(s_t) (`model.gate_norm='none'`), and their recorded figures stay theirs
# whatever the configs' default gate becomes. 'product' is the default objective with that gate
# (the default until issue 22's softmax gate; its earlier records are labelled 'product').
ARMS["product"] = {}
ARMS = {name: (settings if name == "default" else {"model.gate_norm": "none", **settings})
        for name, settings in ARMS.items()}
CORE_ARMS = ("ce", "paper", "default", "oracle", "tent")
AMPLITUDES = (2.0, 1.0)
SEEDS = (0, 1, 2)
# results.json "intensity" entries tabulated beside accuracy / UF1 / UAR.
DIAGNOSTICS = ("saturated_fraction", "within_clip_std", "gate_ablation_changed_fraction",
               "wilcoxon_active_fraction", "spearman_true_per_clip")
# The position-controlled diagnostics (reports.position_diagnostics; runs made before they
# existed show blanks).
POSITION_DIAGNOSTICS = ("learned_spearman_per_clip", "position_baseline_spearman_per_clip",
                        "shuffled_spearman_per_clip", "partial_r_given_position",
                        "apex_hit_fraction", "apex_hit_fraction_position_baseline",
                        "apex_hit_fraction_difference_baseline")


class Run(NamedTuple):
  amplitude: float
  arm: str
  seed: int

  def path(self, root: Path) -> Path:
    return root / f"amp{self.amplitude:g}" / self.arm / f"seed{self.seed}"


def grid(arms=tuple(ARMS), amplitudes=AMPLITUDES, seeds=SEEDS) -> list[Run]:
  """Every (amplitude, arm, seed), most informative first.

  Order: every arm at the default amplitude (2 px); then cross-entropy only vs the full objective at
  the other amplitudes; then the remaining arms there. Within a block, seed-major, so that a
  time-boxed call ends with whole seeds of every arm rather than three seeds of a few arms.
  """
  first, rest = amplitudes[0], amplitudes[1:]
  blocks = [[(first, a) for a in arms],
            [(amp, a) for amp in rest for a in arms if a in CORE_ARMS],
            [(amp, a) for amp in rest for a in arms if a not in CORE_ARMS]]
  return [Run(amp, arm, seed) for block in blocks for seed in seeds for amp, arm in block]


def run_config(run: Run, root: Path, variant: str = "", synthetic_seed: int = 0,
               overrides: dict | None = None):
  """The run's config: the arm's settings, then `overrides` ({'block.key': value}, all runs)."""
  from configs import synthetic  # pylint: disable=import-outside-toplevel
  c = synthetic.get_config(variant)
  with c.unlocked():
    c.synthetic.amplitude_px = run.amplitude
    c.synthetic.seed = synthetic_seed
    for key, value in (overrides or {}).items():
      block, name = key.split(".")
      if name not in c[block]:
        raise KeyError(f"--set {key}: no such config key")
      c[block][name] = value
    c.data.root = str(root / "data" / f"amp{run.amplitude:g}")
    c.train.seed = run.seed
    c.train.checkpoint_every_epochs = c.train.num_epochs  # the final one only: runs are short
    for key, value in ARMS[run.arm].items():
      block, name = key.split(".")
      c[block][name] = value
  return c


def run_grid(root: Path, runs: list[Run], deadline_s: float, variant: str = "", *,
             train_fn=None, compile_cache: bool = True, synthetic_seed: int = 0,
             overrides: dict | None = None) -> None:
  """Trains every run of `runs` that has no results.json yet, in order, until the deadline."""
  import jax  # pylint: disable=import-outside-toplevel
  if train_fn is None:
    from cmnet_jax import train  # pylint: disable=import-outside-toplevel
    train_fn = train.train_and_evaluate
  if compile_cache:
    jax.config.update("jax_compilation_cache_dir", str(root / ".jax_cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
  start, durations = time.monotonic(), []
  todo = [r for r in runs if not Workdir(r.path(root)).results_file.exists()]
  print(f"{len(runs) - len(todo)} of {len(runs)} runs already done; device "
        f"{jax.devices()[0].device_kind} x{jax.device_count()}", flush=True)
  for i, run in enumerate(todo):
    left = deadline_s - (time.monotonic() - start)
    # Runs that reuse a compiled program are much shorter than the first of each arm: plan by
    # the median (a run cut off by an outer timeout loses only itself).
    expected = statistics.median(durations) if durations else 0.0
    if left < expected:
      print(f"deadline: {len(todo) - i} runs left undone (median run ~{expected:.0f} s, "
            f"{left:.0f} s left)", flush=True)
      return
    t0 = time.monotonic()
    result = train_fn(run_config(run, root, variant, synthetic_seed, overrides), run.path(root))
    durations.append(time.monotonic() - t0)
    h = result["headline"]
    with open(root / "log.jsonl", "a") as f:  # a record of where and how long each run took
      f.write(json.dumps({**run._asdict(), "seconds": durations[-1],
                          "device": jax.devices()[0].device_kind, "host": platform.node(),
                          "accuracy": h["accuracy"]}) + "\n")
    print(f"[{i + 1}/{len(todo)}] {run.path(root).relative_to(root)}: acc {h['accuracy']:.3f} "
          f"UF1 {h['uf1']:.3f} UAR {h['uar']:.3f} ({durations[-1]:.0f} s)", flush=True)


def _finished(root: Path) -> Iterator[tuple[Run, dict]]:
  for seed_dir in sorted(root.glob("amp*/*/seed*")):
    path = Workdir(seed_dir).results_file
    if not path.exists():
      continue
    run = Run(float(seed_dir.parent.parent.name[3:]), seed_dir.parent.name,
              int(seed_dir.name[4:]))
    yield run, json.loads(path.read_text())


def run_rows(root: Path) -> list[dict]:
  """One dict per finished run: its cell, headline figures, Spearman correlations and, where
  `log.jsonl` recorded it, the device and seconds it took."""
  logged = {}
  if (root / "log.jsonl").exists():
    for line in (root / "log.jsonl").read_text().splitlines():
      r = json.loads(line)
      logged[Run(r["amplitude"], r["arm"], r["seed"])] = r
  rows = []
  for run, result in _finished(root):
    h, diag = result["headline"], result["intensity"]
    log = logged.get(run, {})
    rows.append({**run._asdict(), **{k: h[k] for k in ("accuracy", "uf1", "uar")},
                 **{k: diag[k] for k in DIAGNOSTICS},
                 **{k: diag.get(k, float("nan")) for k in POSITION_DIAGNOSTICS},
                 "device": log.get("device"), "seconds": log.get("seconds")})
  return rows


def combined_rows(root: Path, earlier: list[dict] = ()) -> list[dict]:
  """The finished runs under `root`, then the `earlier` rows of runs not among them."""
  rows = run_rows(root) if root.exists() else []
  seen = {(r["amplitude"], r["arm"], r["seed"]) for r in rows}
  return rows + [r for r in earlier if (r["amplitude"], r["arm"], r["seed"]) not in seen]


def _mean_sd(values: list[float]) -> str:
  values = [v for v in values if v is not None and v == v]  # runs without the figure: blank
  if not values:
    return ""
  if len(values) == 1:
    return f"{values[0]:.3f}"
  return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def read_rows(paths: list[Path]) -> list[dict]:
  """Rows written earlier by `--runs-out` (one JSON object per line), e.g. the docs' records."""
  rows = []
  for path in paths:
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
      if line.strip():
        try:
          rows.append(json.loads(line))
        except json.JSONDecodeError as e:
          raise ValueError(f"{path}, line {n}: not a JSON object ({e})") from None
  return rows


def summarize(root: Path, earlier: list[dict] = ()) -> str:
  """Markdown table: mean ± sample sd over seeds per (amplitude, arm), over the finished runs
  under `root` and the `earlier` rows (a run found in both counts once: the one under `root`)."""
  columns = ("accuracy", "uf1", "uar") + DIAGNOSTICS + POSITION_DIAGNOSTICS
  cells: dict[tuple[float, str], dict[str, list]] = {}
  for row in combined_rows(root, earlier):
    cell = cells.setdefault((row["amplitude"], row["arm"]), {"seeds": []})
    cell["seeds"].append(row["seed"])
    for key in columns:
      cell.setdefault(key, []).append(row[key])
  order = {a: i for i, a in enumerate(ARMS)}
  lines = ["| amplitude px | arm | seeds | accuracy | UF1 | UAR | saturated | within-clip sd | "
           "gate ablation changed | rank-sum hinge active | Spearman vs true per clip | "
           "per clip, onset excluded: learned | position template | shuffled | "
           "partial r given position | apex hit: learned | position template | "
           "largest onset difference |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for (amp, arm), cell in sorted(cells.items(), key=lambda kv: (-kv[0][0], order.get(kv[0][1], 99))):
    lines.append(f"| {amp:g} | {arm} | {','.join(map(str, sorted(cell['seeds'])))} | " +
                 " | ".join(_mean_sd(cell[key]) for key in columns) + " |")
  return "\n".join(lines)


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--root", default="runs/ablation", help="folder holding every run")
  ap.add_argument("--arms", default=",".join(ARMS), help=f"subset of {','.join(ARMS)}")
  ap.add_argument("--amplitudes", default=",".join(f"{a:g}" for a in AMPLITUDES),
                  help="rendered apex displacements in px; the first is the main one")
  ap.add_argument("--seeds", default=",".join(map(str, SEEDS)))
  ap.add_argument("--deadline-min", type=float, default=float("inf"),
                  help="start no run that would end after this many minutes (by the median run so far)")
  ap.add_argument("--variant", default="", help="configs/synthetic.py variant ('quick': smoke run)")
  ap.add_argument("--synthetic-seed", type=int, default=0,
                  help="synthetic.seed: other identities and clips (choose settings on one, "
                  "report on another)")
  ap.add_argument("--set", default="",
                  help="config overrides for every run, JSON values, e.g. "
                  "'data.frame_sampling=\"uniform\"' (comma-separated)")
  ap.add_argument("--summarize", action="store_true", help="only print the table of finished runs")
  ap.add_argument("--out", default="", help="with --summarize: also write the table here")
  ap.add_argument("--runs-out", default="",
                  help="with --summarize: also write one JSON line per finished run here")
  ap.add_argument("--earlier", default="",
                  help="with --summarize: also pool the runs recorded in these --runs-out files "
                  "(comma-separated; a run also under --root counts once)")
  args = ap.parse_args(argv)
  root = Path(args.root)
  if args.summarize:
    earlier = read_rows([Path(p) for p in args.earlier.split(",") if p])
    table = summarize(root, earlier)
    print(table)
    if args.out:
      Path(args.out).write_text(table + "\n")
    if args.runs_out:
      Path(args.runs_out).write_text(
          "".join(json.dumps(r) + "\n" for r in combined_rows(root, earlier)))
    return 0
  arms = tuple(a for a in args.arms.split(",") if a)
  unknown = [a for a in arms if a not in ARMS]
  if unknown:
    print(f"error: unknown arm(s) {unknown}; known: {list(ARMS)}", file=sys.stderr)
    return 2
  runs = grid(arms, tuple(float(a) for a in args.amplitudes.split(",")),
              tuple(int(s) for s in args.seeds.split(",")))
  root.mkdir(parents=True, exist_ok=True)
  overrides = {}
  for item in filter(None, args.set.split(",")):
    key, _, value = item.partition("=")
    overrides[key] = json.loads(value)
  run_grid(root, runs, args.deadline_min * 60, args.variant,
           synthetic_seed=args.synthetic_seed, overrides=overrides)
  print(summarize(root))
  return 0


if __name__ == "__main__":
  sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
  from cmnet_jax import host_devices  # pylint: disable=g-import-not-at-top
  host_devices.expose_cpu_devices(8)  # as run.py: one fold per host device on a CPU
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  sys.exit(main())
