"""How hard does each loss term pull on the network, over training? (a mechanism check)

    python -m experiments.term_gradients --root runs/term_gradients            # default arm
    python -m experiments.term_gradients --root runs/term_gradients --arm paper --out docs/x.md

Trains single LOSO folds of `configs/synthetic.py` (an arm of `experiments.ablation`, one
amplitude, the training seeds given) exactly as a run does (`train_step.make_train_epoch`), and at
chosen epochs (0 = the initialisation) measures, on `--batches` training batches drawn as the
train step draws them (`train_step.sample_batch`), the gradient of every weighted term
lambda_k * L_k of the objective with respect to the parameters. It reports the L2 norm of each
term's gradient over

- `intensity`: the intensity pathway (ICE, the squeeze to s_t and the extension back),
- `id_projection`: the ID term's projection head on the ICE features,
- `ffe`: the facial feature encoder,
- `head`: LSTM and classifier,
- `all`: every parameter; the row `sum` is the objective's whole gradient (what the optimizer
  clips to `optim.grad_clip_norm` before AdamW),

and the cosine between each term's gradient and cross-entropy's on the intensity pathway (> 0:
they pull the same way; < 0: the term fights CE). A term whose gradient is orders of magnitude
below the others' does not shape the network, whatever its logged value; one that dominates
decides what the shared parameters learn. Values are the median over folds, seeds and batches.

The synthetic data are generated once under `<root>/data` (the layout of
`experiments.ablation`) and the decoded clips cached under `<root>/workdirs`; nothing else is
written except `--out`.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

GROUPS = {"intensity": ("ice", "squeeze", "extend"), "ffe": ("ffe",),
          "id_projection": ("projection", "projection_hidden")}
GROUP_COLUMNS = ("all", "intensity", "id_projection", "ffe", "head")


def group_of(top: str) -> str:
  for group, names in GROUPS.items():
    if top in names:
      return group
  return "head"


def weighted_term_gradients(loss_fn, coefficients, params, *batch) -> dict:
  """`{term: d(lambda_term * L_term)/d params}` for every term of `coefficients` (a
  `train_step.make_loss_fn` loss_fn and the batch arguments it takes after `params`). Their sum
  is the gradient of the objective. One forward pass, one backward pass per term."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

  def weighted_terms(p):
    logs = loss_fn(p, *batch)[1][0]
    return {name: coefficients[name] * logs[name] for name in coefficients}

  values, vjp = jax.vjp(weighted_terms, params)
  return {name: vjp({other: jnp.ones_like(v) if other == name else jnp.zeros_like(v)
                     for other, v in values.items()})[0] for name in values}


def gradient_stats(grads: dict) -> dict:
  """Norms of each term's gradient per parameter group (`GROUPS`, rest 'head', 'all'), the norm
  of their sum `('sum', 'all')`, and each term's cosine with 'ce' on the intensity pathway."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

  def vector(tree, group=None):
    return jnp.concatenate([jnp.ravel(x) for top in sorted(tree)
                            if group is None or group_of(top) == group
                            for x in jax.tree.leaves(tree[top])])

  stats = {("sum", "all"): jnp.linalg.norm(sum(vector(g) for g in grads.values()))}
  groups = sorted({group_of(top) for g in grads.values() for top in g})
  ce = vector(grads["ce"], "intensity") if "ce" in grads else None
  for name, tree in grads.items():
    stats[(name, "all")] = jnp.linalg.norm(vector(tree))
    for group in groups:
      stats[(name, group)] = jnp.linalg.norm(vector(tree, group))
    if ce is not None and name != "ce":
      mine = vector(tree, "intensity")
      stats[(name, "cos_ce")] = jnp.dot(mine, ce) / (
          jnp.linalg.norm(mine) * jnp.linalg.norm(ce) + 1e-30)
  return stats


def measure(arm: str, amplitude: float, seeds, folds, epochs, batches: int, root: Path,
            variant: str = "") -> dict:
  """{(term, group): [norm...]} and {(term, 'cos_ce'): [cosine...]} per epoch: {epoch: {...}}."""
  import jax  # pylint: disable=import-outside-toplevel

  from cmnet_jax import input_pipeline, losses, train, train_step as ts  # pylint: disable=import-outside-toplevel
  from cmnet_jax.workdir import Workdir  # pylint: disable=import-outside-toplevel
  from experiments import ablation  # pylint: disable=import-outside-toplevel

  out: dict = {}
  for seed in seeds:
    config = ablation.run_config(ablation.Run(amplitude, arm, seed), root, variant)
    wd = Workdir(root / "workdirs" / f"amp{amplitude:g}")
    wd.path.mkdir(parents=True, exist_ok=True)
    data = input_pipeline.load_clips(config, wd, input_pipeline.read_source(config, wd))
    bad = [f for f in folds if not 0 <= f < len(data.folds)]
    if bad:
      raise SystemExit(f"--folds: {bad} out of range; this set has {len(data.folds)} folds "
                       f"(0..{len(data.folds) - 1})")
    setup = ts.make_setup(config, len(data.class_names))
    coefficients = losses.terms.objective_coefficients(
        losses.terms.resolve_preset(config.loss))
    loss_fn = ts.make_loss_fn(setup.model, config)

    @jax.jit
    def probe(params, fold, device_data, rng):
      clips, labels, apex, gate, k_loss = ts.sample_batch(rng, fold, device_data, config)
      return gradient_stats(weighted_term_gradients(loss_fn, coefficients, params, clips,
                                                    labels, apex, k_loss, gate))

    epoch_fn = jax.jit(ts.make_train_epoch(setup.model, setup.tx, config))
    init_one = ts.make_init(setup.model, setup.tx, setup.sample)
    device_data = jax.device_put(data.device_data())
    for fold_id in folds:
      fold = jax.tree.map(lambda x: x[0], train.fold_arrays(data, np.array([fold_id])))
      state = init_one(train.fold_rng(jax.random.PRNGKey(config.train.seed), fold_id))
      probe_rng = jax.random.PRNGKey(10_000 + fold_id)
      for epoch in range(max(epochs) + 1):
        if epoch in epochs:
          for b in range(batches):
            stats = jax.device_get(probe(state.params, fold, device_data,
                                         jax.random.fold_in(probe_rng, 1000 * epoch + b)))
            for key, value in stats.items():
              out.setdefault(epoch, {}).setdefault(key, []).append(float(value))
          print(f"seed {seed} fold {fold_id} epoch {epoch}: " + ", ".join(
              f"{n} {statistics.median(out[epoch][(n, 'all')]):.3g}" for n in coefficients),
                flush=True)
        if epoch < max(epochs):
          state, _ = epoch_fn(state, fold, device_data)
  return out


def table(out: dict) -> str:
  terms = sorted({k[0] for e in out.values() for k in e}, key=lambda n: (n == "sum", n != "ce", n))
  lines = ["| epoch | term (weighted) | \\|grad\\| all | intensity pathway | ID projection | FFE | "
           "head (LSTM, classifier) | cos(term, CE) on the intensity pathway |",
           "|---|---|---|---|---|---|---|---|"]

  def cell(epoch, name, group, fmt=".3g"):
    values = out[epoch].get((name, group))
    return f"{statistics.median(values):{fmt}}" if values else "-"

  for epoch in sorted(out):
    for name in terms:
      cos = "-" if name in ("ce", "sum") else cell(epoch, name, "cos_ce", "+.2f")
      lines.append(f"| {epoch} | {name} | " + " | ".join(
          cell(epoch, name, g) for g in GROUP_COLUMNS) + f" | {cos} |")
  return "\n".join(lines)


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--root", type=Path, required=True)
  p.add_argument("--arm", default="default", help="an arm of experiments.ablation.ARMS")
  p.add_argument("--amplitude", type=float, default=2.0)
  p.add_argument("--seeds", default="0", help="training seeds, comma-separated")
  p.add_argument("--folds", default="0,4", help="held-out subjects' fold indices")
  p.add_argument("--epochs", default="0,1,5,10,20,39",
                 help="measure before these epochs (0 = at initialisation)")
  p.add_argument("--batches", type=int, default=4)
  p.add_argument("--variant", default="", help="configs/synthetic.py variant ('' or 'quick')")
  p.add_argument("--out", type=Path)
  a = p.parse_args(argv)
  from experiments import ablation  # pylint: disable=import-outside-toplevel
  if a.arm not in ablation.ARMS:
    sys.exit(f"--arm: expected one of {sorted(ablation.ARMS)}, got {a.arm!r}")
  ints = lambda s: [int(x) for x in s.split(",") if x]  # noqa: E731
  if not ints(a.epochs) or min(ints(a.epochs)) < 0 or a.batches < 1:
    sys.exit("--epochs: expected epoch numbers >= 0; --batches: expected >= 1")
  out = measure(a.arm, a.amplitude, ints(a.seeds), ints(a.folds), ints(a.epochs), a.batches,
                a.root, a.variant)
  text = (f"arm {a.arm}, amplitude {a.amplitude:g} px, seeds {a.seeds}, folds {a.folds}, "
          f"{a.batches} batches per point; medians\n\n" + table(out) + "\n")
  print(text)
  if a.out:
    a.out.write_text(text)


if __name__ == "__main__":
  main()
