"""A small factory combining named loss terms with a coefficient vector."""
from typing import Callable, Dict, Mapping, Optional, Tuple

import jax
import jax.numpy as jnp

from cmnet_jax.losses.terms import TERMS

Objective = Callable[..., Tuple[jax.Array, Dict[str, jax.Array]]]


def make_objective(coefficients: Mapping[str, float]) -> Objective:
  """Returns `objective(terms, where=None) -> (total, means)` for L = sum_k lambda_k mean(L_k).

  Each term is a per-example loss `[batch]` (averaged over the examples with `where` True, 0 if
  none) or an already reduced scalar. `total` = sum_k lambda_k * means[k], `means` maps every
  supplied term name to its mean (for logging). A term whose coefficient is 0 may be left out.

  Args:
    coefficients: term name -> lambda; names of registered terms (`TERMS`).

  Returns:
    the objective function; it raises ValueError for unknown or missing terms, or bad shapes.

  Example:
    >>> import jax.numpy as jnp
    >>> objective = make_objective({'ce': 1.0, 'wilcoxon': 0.5})
    >>> total, means = objective({'ce': jnp.array([1., 3.]), 'wilcoxon': jnp.array(0.2)})
    >>> round(float(total), 4), sorted(means)
    (2.1, ['ce', 'wilcoxon'])
  """
  unknown = sorted(set(coefficients) - set(TERMS))
  if unknown:
    raise ValueError(f"make_objective: unknown term name(s) {unknown}; expected names among "
                     f"{tuple(TERMS)} (register a new term with losses.register_term).")
  weights = {name: float(value) for name, value in coefficients.items()}

  def objective(terms: Mapping[str, jax.Array],
                where: Optional[jax.Array] = None) -> Tuple[jax.Array, Dict[str, jax.Array]]:
    extra = sorted(set(terms) - set(weights))
    if extra:
      raise ValueError(f"objective: term(s) {extra} have no coefficient; coefficients are "
                       f"given for {sorted(weights)}.")
    missing = sorted(n for n, w in weights.items() if w != 0.0 and n not in terms)
    if missing:
      raise ValueError(f"objective: missing term(s) {missing} with non-zero coefficients.")
    means = {}
    for name in weights:
      if name not in terms:
        continue
      value = jnp.asarray(terms[name])
      if value.ndim == 0:
        means[name] = value
      elif value.ndim == 1:
        valid = jnp.ones(value.shape, bool) if where is None else jnp.asarray(where, bool)
        if valid.shape != value.shape:
          raise ValueError(f"objective: where has shape {valid.shape}, term '{name}' has "
                           f"shape {value.shape}; expected both [batch].")
        means[name] = jnp.sum(jnp.where(valid, value, 0.0)) / jnp.maximum(jnp.sum(valid), 1)
      else:
        raise ValueError(f"objective: term '{name}' must be [batch] or a scalar, got shape "
                         f"{value.shape}.")
    total = sum(weights[name] * mean for name, mean in means.items())
    return jnp.asarray(total, jnp.float32), means

  return objective
