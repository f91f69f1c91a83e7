"""The scale term: the learned intensity s_t against the prototype's mean, squared error.

The Wilcoxon and order terms compare ranks only, so they leave the scale of s_t free: a model
can satisfy them with s ~ 0.6 on every frame but the apex (0.7), and then its gate in the fusion
hardly differs from no gate at all (docs/results.md, issue 22). This term asks for the values
themselves: per clip,

    L_scale = (1 / |V|) sum_{t in V} (s_t - mu_t)^2

with mu_t the intensity prototype's mean at the clip's apex (epsilon at the first and last
sampled frame, 1 at the apex, linear between) and V the scored frames: all of them, or all but
the first (`scale_from_frame=1`, the onset frame, whose onset-difference input is identically
zero, so its s_t is a constant of the network and carries no information about the clip).

>>> import jax.numpy as jnp
>>> s = jnp.array([[0.1, 0.6, 1.0, 0.5]])
>>> mu = jnp.array([[0.1, 0.55, 1.0, 0.55]])
>>> [round(float(v), 5) for v in scale_loss(s, mu)]
[0.00125]
>>> [round(float(v), 5) for v in scale_loss(s, mu, from_frame=1)]
[0.00167]
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from cmnet_jax.config_blocks import non_negative
from cmnet_jax.losses.terms import Option
from cmnet_jax.losses.terms import Term
from cmnet_jax.losses.terms import register_term


def scale_loss(intensities: jax.Array, target: jax.Array, *, from_frame: int = 0) -> jax.Array:
  """Per-clip mean squared error `[B]` of `intensities` `[B, T]` against `target` `[B, T]`,
  over frames `from_frame`, ..., T - 1."""
  if intensities.shape != target.shape or intensities.ndim != 2:
    raise ValueError(f"scale_loss: intensities and target must both be [batch, time]; got "
                     f"{intensities.shape} and {target.shape}")
  if not 0 <= from_frame < intensities.shape[1]:
    raise ValueError(f"scale_loss: from_frame must be in [0, {intensities.shape[1] - 1}], got "
                     f"{from_frame}")
  d = intensities[:, from_frame:].astype(jnp.float32) - target[:, from_frame:]
  return jnp.mean(d * d, axis=1)


def _scale(step, o):
  """s_t against the prototype mean at the clip's apex (see the module docstring)."""
  mean, _ = step.prototype()
  return scale_loss(step.output.intensities, mean, from_frame=o["scale_from_frame"])


SCALE = register_term(Term(
    "scale", _scale, coefficient=0.0, coefficient_key="lambda_scale",
    doc="scale calibration: squared error of s_t against the prototype mean (values, not ranks)",
    options={"scale_from_frame": Option(
        1, "first scored frame: 1 leaves out the onset frame (its onset-difference input is zero)",
        check=non_negative)}))
