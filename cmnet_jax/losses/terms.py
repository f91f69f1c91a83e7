"""The registry of objective terms: each term is declared once, here or in a user's own module.

A `Term` names a loss, the `loss` config keys it reads (its coefficient and its options, with
defaults and documentation) and a function that takes what the training step offers
(`StepInputs`) and returns the per-clip loss `[batch]` (optionally with metrics to log). The
config block (`configs/common.py loss_config`), its checks (`cmnet_jax.config_schema.loss_spec`),
the objective (`make_objective`) and the training
step (`cmnet_jax.train_step.make_loss_fn`) all derive from `TERMS`, so adding a term is one
`register_term` call, and nothing in the library changes:

>>> import jax.numpy as jnp
>>> def mean_intensity(step, options):          # per-clip loss [batch]
...   return jnp.abs(step.output.intensities.mean(-1) - options['target_intensity'])
>>> term = register_term(Term(
...     'mean_intensity', mean_intensity, coefficient=0.0,
...     options={'target_intensity': Option(0.5, 'mean s_t the term pulls towards',
...                                         check=config_blocks.in_range(0, 1))},
...     doc='example term'))
>>> term.coefficient_key, 'mean_intensity' in TERMS
('lambda_mean_intensity', True)
>>> term.options['target_intensity'].field().expected()
'a number in [0, 1] (mean s_t the term pulls towards)'
>>> unregister_term('mean_intensity')

Registered terms appear in `loss_config()` as `loss.<coefficient_key>` plus their options; a term
whose coefficient is 0 is not computed (unless it is `diagnostic`: then it is computed and logged
but adds nothing to the objective). Each term's mean is logged under its name, its metrics as
`<name>_<metric>`.
"""
from __future__ import annotations

import dataclasses
import zlib
from typing import Any, Callable, Mapping, NamedTuple, Optional

import jax
import jax.numpy as jnp

from cmnet_jax import config_blocks

_KINDS = ((bool, config_blocks.BOOL), (int, config_blocks.INT), (float, config_blocks.FLOAT),
          (str, config_blocks.STR))


class Option(NamedTuple):
  """A `loss` config key a term reads, declared once: default value, one line of documentation,
  and optionally a `config_blocks.Check` on the value (e.g. `config_blocks.positive`) and its
  `config_blocks.Kind` (default: the kind of `default`). `config_schema.validate` checks every
  registered option with them before a run starts."""
  default: Any
  doc: str
  check: Optional[config_blocks.Check] = None
  kind: Optional[config_blocks.Kind] = None

  def field(self) -> config_blocks.Field:
    """The option as a config field (kind, check, doc, default)."""
    kind = self.kind or next((k for t, k in _KINDS if type(self.default) is t), None)
    if kind is None:
      raise TypeError(f"loss option default {self.default!r}: give Option(kind=...), its type "
                      "has no config kind of its own")
    return config_blocks.Field(kind, self.check, self.doc, default=self.default)


class StepInputs(NamedTuple):
  """What the training step offers a term for one batch of B clips of T frames.

  Attributes:
    clips: uint8 or float `[B, T, H, W, 3]`, the augmented training clips.
    labels: int32 `[B]`.
    apex: int32 `[B]`, the apex position in each clip.
    output: the model's `CMNetOutput` for `clips` (logits, intensities s_t, embeddings, features).
    key: `key(stream) -> PRNG key`, one independent random stream per name.
    positive_embeddings: `() -> [B, T, D]` ICE embeddings of photometric views of the frames
      (computed on first use; only the ID term needs them).
    prototype: `() -> (mean, std)`, each `[B, T]`, the intensity prototype at each clip's apex
      (`intensity_prototype` with the shared `loss.prototype_*` options).
  """
  clips: jax.Array
  labels: jax.Array
  apex: jax.Array
  output: Any
  key: Callable[[str], jax.Array]
  positive_embeddings: Callable[[], jax.Array]
  prototype: Callable[[], tuple]


TermFn = Callable[[StepInputs, Mapping[str, Any]], Any]


@dataclasses.dataclass(frozen=True)
class Term:
  """One objective term.

  Attributes:
    name: the term's name in the objective and the logs.
    fn: `fn(step: StepInputs, options: dict) -> loss [B]` or `(loss [B], {metric: scalar})`;
      `options` maps each key of `options` to its configured value.
    coefficient: default lambda (the config's value is used in a run).
    options: the `loss` config keys this term reads (besides its coefficient).
    doc: one line for the config's documentation.
    coefficient_key: config key of lambda; default `lambda_<name>`.
    diagnostic: computed and logged even when its coefficient is 0 (cheap terms whose value is
      worth watching in every run).
  """
  name: str
  fn: TermFn
  coefficient: float = 0.0
  options: Mapping[str, Option] = dataclasses.field(default_factory=dict)
  doc: str = ""
  coefficient_key: str = ""
  diagnostic: bool = False

  def __post_init__(self):
    if not self.name.isidentifier():
      raise ValueError(f"Term name must be an identifier, got {self.name!r}")
    if not self.coefficient_key:
      object.__setattr__(self, "coefficient_key", f"lambda_{self.name}")

  def evaluate(self, step: StepInputs, loss_config: Any) -> tuple[jax.Array, dict]:
    """`(per-clip loss [B], metrics)` with this term's options read from the `loss` block."""
    options = {key: loss_config[key] for key in self.options}
    result = self.fn(step, options)
    loss, metrics = result if isinstance(result, tuple) else (result, {})
    loss = jnp.asarray(loss)
    if loss.ndim != 1:
      raise ValueError(f"loss term {self.name!r} must return a per-clip loss [batch], got "
                       f"shape {loss.shape}")
    return loss, dict(metrics)


# Options every calibration term may use (through StepInputs.prototype), not owned by one term.
TERMS: dict[str, Term] = {}

# Named presets: loss config key -> value. `resolve_preset` applies one.
PRESETS: dict[str, dict[str, Any]] = {}

SHARED_OPTIONS = {
    "preset": Option("", "'' = the values below | a named preset (PRESETS, e.g. 'paper') that "
                     "sets some of them",
                     check=config_blocks.Check(lambda v: v == "" or v in PRESETS,
                                               lambda: f"in {('', *sorted(PRESETS))}")),
    "prototype_epsilon": Option(0.1, "prototype mean at onset and offset (1 at the apex)",
                                check=config_blocks.in_range(0, 1, hi_open=True)),
    "prototype_sigma_floor": Option(0.01, "smallest prototype standard deviation",
                                    check=config_blocks.non_negative),
}


def register_preset(name: str, values: Mapping[str, Any]) -> None:
  """Declares a preset: a name for a set of `loss` config values (e.g. the paper-literal form)."""
  if not name:
    raise ValueError("a preset needs a non-empty name")
  PRESETS[name] = dict(values)


def resolve_preset(loss_config: Any) -> Any:
  """The `loss` block with its preset applied (a copy; the block itself when preset is '').

  A preset sets the keys it names. A key the preset sets that the config also changed from its
  default to another value is a conflict: ValueError naming both, rather than a silent winner.
  """
  name = loss_config["preset"]
  if not name:
    return loss_config
  if name not in PRESETS:
    raise ValueError(f"loss.preset: unknown preset {name!r}; expected '' or one of "
                     f"{sorted(PRESETS)}")
  defaults = config_entries()
  resolved = loss_config.copy_and_resolve_references() if hasattr(
      loss_config, "copy_and_resolve_references") else dict(loss_config)
  for key, value in PRESETS[name].items():
    current = loss_config[key]
    if current != value and current != defaults[key].default:
      raise ValueError(f"loss.preset={name!r} sets loss.{key}={value!r} but the config sets "
                       f"loss.{key}={current!r}; drop one of the two")
    if hasattr(resolved, "unlocked"):
      with resolved.unlocked():
        resolved[key] = value
    else:
      resolved[key] = value
  return resolved


def register_term(term: Term, *, replace: bool = False) -> Term:
  """Adds `term` to `TERMS` (the objective, the config and the train step then know it).

  Raises ValueError if the name, coefficient key or an option key is already used by another
  term (pass `replace=True` to redefine a term of the same name).
  """
  if term.name in TERMS and not replace:
    raise ValueError(f"a loss term named {term.name!r} is already registered")
  taken = {key: other.name for other in TERMS.values() if other.name != term.name
           for key in (other.coefficient_key, *other.options)}
  taken.update({key: "the shared loss options" for key in SHARED_OPTIONS})
  for key in (term.coefficient_key, *term.options):
    if key in taken:
      raise ValueError(f"loss term {term.name!r}: config key loss.{key} is already used by "
                       f"{taken[key]}")
  TERMS[term.name] = term
  return term


def unregister_term(name: str) -> None:
  """Removes a registered term (for tests and interactive use)."""
  del TERMS[name]


def coefficients_from_config(loss_config: Any) -> dict[str, float]:
  """`{term name: lambda}` for every registered term, read from the `loss` config block."""
  missing = [t.coefficient_key for t in TERMS.values() if t.coefficient_key not in loss_config]
  if missing:
    raise KeyError(f"loss config: missing key(s) {missing}: the config was built before these "
                   "terms were registered; register them before calling get_config()")
  return {name: float(loss_config[t.coefficient_key]) for name, t in TERMS.items()}


def config_entries() -> dict[str, Option]:
  """Every `loss` config key the registered terms read: shared options, coefficients, options."""
  entries = dict(SHARED_OPTIONS)
  for term in TERMS.values():
    entries[term.coefficient_key] = Option(term.coefficient, f"coefficient of {term.name}: "
                                           f"{term.doc}")
    entries.update(term.options)
  return entries


# The named random streams of a step. The first four are split from the step's loss key in this
# order (so their draws are those of the earlier hand-wired step); any other name gets its own
# stream by folding the name's CRC-32 into the key.
_SPLIT_STREAMS = ("dropout", "positives", "negatives", "prototype")


def stream_keys(rng: jax.Array) -> Callable[[str], jax.Array]:
  """`key(name)`: an independent PRNG key per stream name, derived from `rng`."""
  split = dict(zip(_SPLIT_STREAMS, jax.random.split(rng, len(_SPLIT_STREAMS))))

  def key(name: str) -> jax.Array:
    if name in split:
      return split[name]
    return jax.random.fold_in(rng, zlib.crc32(name.encode()) & 0x7FFFFFFF)

  return key


def active_terms(loss_config: Any) -> list[tuple[Term, float]]:
  """Registered terms a step computes: non-zero coefficient, or diagnostic. In registry order.

  `loss_config` must have its preset resolved (`resolve_preset`).
  """
  coefficients = coefficients_from_config(loss_config)
  return [(t, coefficients[t.name]) for t in TERMS.values()
          if coefficients[t.name] or t.diagnostic]


def evaluate_terms(step: StepInputs, loss_config: Any, objective: Callable
                   ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Computes every active term and combines them: `(total, logs)`.

  `objective` is `make_objective({name: lambda})` over the terms with non-zero coefficients;
  `logs` holds each computed term's mean (diagnostic terms included) and its metrics.
  """
  values, logs = {}, {}
  coefficients = coefficients_from_config(loss_config)
  for term, _ in active_terms(loss_config):
    loss, metrics = term.evaluate(step, loss_config)
    if coefficients[term.name]:
      values[term.name] = loss
    else:
      logs[term.name] = jnp.mean(loss)
    logs.update({f"{term.name}_{k}": v for k, v in metrics.items()})
  total, means = objective(values)
  return total, {**means, **logs}


def objective_coefficients(loss_config: Any) -> dict[str, float]:
  """`{name: lambda}` of the terms that enter the objective (non-zero coefficients)."""
  return {k: v for k, v in coefficients_from_config(loss_config).items() if v}


def describe(loss_config: Optional[Any] = None) -> str:
  """One line per registered term: name, coefficient (configured, else default), doc."""
  coefficients = coefficients_from_config(loss_config) if loss_config is not None else {
      n: t.coefficient for n, t in TERMS.items()}
  return "\n".join(f"{n}: lambda={coefficients[n]:g}  {t.doc}" for n, t in TERMS.items())
