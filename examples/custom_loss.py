"""Add a loss term to the objective without editing the library: from a script, or from the
command line as a plug-in.

    python examples/custom_loss.py --workdir /tmp/cmnet_custom_loss            # 1. a script
    python run.py --plugins=examples.custom_loss --config=configs/tiny.py \
        --config.loss.lambda_peak=0.1 --workdir /tmp/cmnet_peak                  # 2. a plug-in

The term below asks that the apex frame carry the clip's largest intensity: a hinge
    L_peak = mean_{t != a} max(0, s_t - s_a + margin)
over the frames t of the clip, a its apex position. It is declared once with the public API
(`losses.register_term`): its function reads what it needs from the training step
(`losses.StepInputs`: the model's output, the apex, the prototype, random streams...), and its
coefficient and option become config keys (`loss.lambda_peak`, `loss.peak_margin`).

1. `main` registers it, builds `configs/tiny.py`'s config (which then has the keys) and trains
   a few steps; the term's value is logged beside the built-in terms (printed at the end, in
   `results.json["training_last_epoch"]`, the training curves and TensorBoard).
2. `--plugins=examples.custom_loss` (run.py, or `cmnet-jax` with this folder's parent on
   PYTHONPATH) imports this module and calls its `register()` before the config is read, so
   `--config.loss.lambda_peak` and `--config.loss.peak_margin` exist; the workdir records the
   plug-in, and `--mode=eval` / `predict` / a resume import it again. Any module of one's own
   works the same (`cmnet_jax/plugins.py`); importing this one registers nothing by itself.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from cmnet_jax import losses  # pylint: disable=g-import-not-at-top,wrong-import-position


def apex_peak_loss(intensities: jax.Array, apex: jax.Array, *, margin: float) -> jax.Array:
  """Per clip mean_{t != a} max(0, s_t - s_a + margin): `[batch, T]`, `[batch]` -> `[batch]`.

  >>> s = jnp.array([[0.1, 0.9, 0.2], [0.8, 0.5, 0.1]])
  >>> [round(v, 3) for v in apex_peak_loss(s, jnp.array([1, 1]), margin=0.1).tolist()]
  [0.0, 0.2]
  """
  s_apex = jnp.take_along_axis(intensities, apex[:, None], axis=1)
  others = jnp.arange(intensities.shape[1])[None, :] != apex[:, None]
  hinge = jnp.where(others, jax.nn.relu(intensities - s_apex + margin), 0.0)
  return hinge.sum(1) / jnp.maximum(others.sum(1), 1)


def _peak_term(step: losses.StepInputs, options: dict):
  loss = apex_peak_loss(step.output.intensities, step.apex, margin=options["peak_margin"])
  return loss, {"active": jnp.mean((loss > 0).astype(jnp.float32))}


PEAK = losses.Term(
    "peak", _peak_term, coefficient=0.05,
    doc="the apex frame carries the clip's largest intensity (hinge with a margin)",
    options={"peak_margin": losses.Option(0.1, "how far above every other frame the apex should be")})


def register() -> None:
  """Adds the term (`--plugins=examples.custom_loss` calls this after importing the module)."""
  losses.register_term(PEAK, replace=True)


def main(argv=None) -> dict:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--workdir", default="runs/custom_loss")
  args = ap.parse_args(argv)
  register()   # before the config is built: its keys join it
  from configs import tiny  # pylint: disable=g-import-not-at-top
  from cmnet_jax import train  # pylint: disable=g-import-not-at-top
  config = tiny.get_config()
  print(f"objective: {losses.terms.objective_coefficients(config.loss)}")
  results = train.train_and_evaluate(config, args.workdir)
  logged = results["training_last_epoch"]
  print("last epoch, mean over folds:",
        ", ".join(f"{k} {v:.4f}" for k, v in logged.items() if k.startswith("peak") or
                  k in losses.TERMS))
  return results


if __name__ == "__main__":
  main()
