"""Trace-time argument checks shared by the loss functions (shapes, dtypes, options)."""
from typing import Any, Sequence

import jax.numpy as jnp


def check_rank(name: str, array: Any, ranks: Sequence[int], layout: str) -> None:
  """Raises ValueError unless `array.ndim` is one of `ranks`; `layout` names the axes."""
  if jnp.ndim(array) not in tuple(ranks):
    raise ValueError(
        f"{name}: expected shape {layout} (rank {' or '.join(map(str, ranks))}), "
        f"got shape {jnp.shape(array)}.")


def check_shape(name: str, array: Any, shape: Sequence[int], layout: str) -> None:
  """Raises ValueError unless `array.shape == shape`; `layout` names the axes."""
  if tuple(jnp.shape(array)) != tuple(shape):
    raise ValueError(
        f"{name}: expected shape {layout} = {tuple(shape)}, got {jnp.shape(array)}.")


def check_option(name: str, value: Any, options: Sequence[Any]) -> None:
  """Raises ValueError unless `value` is one of `options`."""
  if value not in tuple(options):
    raise ValueError(f"{name}: expected one of {tuple(options)}, got {value!r}.")


def check_temperature(name: str, value: Any, *, allow_zero: bool) -> None:
  """Raises ValueError for a negative (or, unless allowed, zero) Python-number temperature.

  Traced temperatures cannot be checked and are accepted as they are.
  """
  if isinstance(value, (int, float)):
    if value < 0 or (value == 0 and not allow_zero):
      bound = ">= 0" if allow_zero else "> 0"
      raise ValueError(f"{name}: expected a temperature {bound}, got {value!r}.")


def mask_or_ones(name: str, where: Any, shape: Sequence[int], layout: str) -> jnp.ndarray:
  """Returns `where` as a bool array of `shape` (all True when `where` is None)."""
  if where is None:
    return jnp.ones(shape, dtype=bool)
  check_shape(name, where, shape, layout)
  return jnp.asarray(where, dtype=bool)
