"""How a config block is declared and read; `validate(config, specs)` for a whole config.

A block's `Spec` maps each key to a `Field(kind, check, doc, default=...)`, the one declaration
of that key (its default, type, check and one line of documentation), and may add `Rule`s tying
keys together. The module that reads a block declares its spec next to its code (`models.SPEC`,
`augment.SPEC`, `datasets.synthetic.generator.SETTINGS`, `align.runner.SPEC`; a loss term's
`losses.Option`s) and reads it with `read_block`; `configs/common.py` builds the default config
from the specs (`Spec.defaults`). `validate(config, specs)` checks every block it is handed plus
the rules that span blocks, and reports every problem found at once, before anything is
written. This module imports nothing of the library: `cmnet_jax.config_schema` gathers the
blocks of a run's config and hands them over.

>>> spec = Spec({'batch_size': Field(INT, at_least(1), 'clips per step', default=16),
...              'mode': Field(STR, one_of('a', 'b'), default='a')})
>>> spec.defaults()
{'batch_size': 16, 'mode': 'a'}
>>> read_block({'batch_size': 8, 'mode': 'a'}, spec, 'train')
{'batch_size': 8, 'mode': 'a'}
>>> try:
...   read_block({'batch_size': 0, 'mode': 'c'}, spec, 'train')
... except ConfigError as e:
...   print(e)
train.batch_size = 0: expected an int >= 1 (clips per step)
train.mode = 'c': expected a string in ('a', 'b')

Keys a spec does not name are left alone (a user's registered loss term may add some).
"""
from __future__ import annotations

import dataclasses
import numbers
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Optional, Sequence


class ConfigError(ValueError):
  """Bad config values; `problems` holds one line each (`block.key = value: expected ...`)."""

  def __init__(self, problems: Sequence[str]):
    self.problems = tuple(problems)
    super().__init__("\n".join(self.problems))

  def __str__(self) -> str:
    return "\n".join(self.problems)


class ConfigKeyError(ConfigError, KeyError):
  """A `ConfigError` in which at least one key is missing (also a `KeyError`)."""


class Kind(NamedTuple):
  """A value type: `name` for messages, `convert(value)` raising TypeError/ValueError if wrong."""
  name: str
  convert: Callable[[Any], Any]


def _int(v: Any) -> int:
  if isinstance(v, bool) or not isinstance(v, numbers.Real):
    raise TypeError(v)
  if not isinstance(v, numbers.Integral) and not float(v).is_integer():
    raise ValueError(v)
  return int(v)


def _float(v: Any) -> float:
  if isinstance(v, bool) or not isinstance(v, numbers.Real):
    raise TypeError(v)
  return float(v)


def _of(cls: type) -> Callable[[Any], Any]:
  def convert(v):
    if type(v).__name__ == "bool_" and cls is bool:  # numpy bool
      return bool(v)
    if not isinstance(v, cls):
      raise TypeError(v)
    return v
  return convert


def _tuple(item: Callable[[Any], Any], length: Optional[int] = None) -> Callable[[Any], tuple]:
  def convert(v):
    if not isinstance(v, (tuple, list)) or (length is not None and len(v) != length):
      raise TypeError(v)
    return tuple(item(x) for x in v)
  return convert


INT = Kind("an int", _int)
FLOAT = Kind("a number", _float)
STR = Kind("a string", _of(str))
BOOL = Kind("a bool", _of(bool))
INTS = Kind("a tuple of ints", _tuple(_int))
FLOAT_PAIR = Kind("a pair of numbers (lo, hi)", _tuple(_float, 2))


class Check(NamedTuple):
  """`test(value) -> bool` and what it expects, e.g. `'>= 1'` (read after the kind's name);
  `expected` may be a function returning the text, for a check against a registry that grows."""
  test: Callable[[Any], bool]
  expected: Any

  def text(self) -> str:
    return self.expected() if callable(self.expected) else self.expected


def at_least(lo: float) -> Check:
  return Check(lambda v: v >= lo, f">= {lo}")


positive = Check(lambda v: v > 0, "> 0")
non_negative = at_least(0)


def in_range(lo: float, hi: float, *, hi_open: bool = False) -> Check:
  if hi_open:
    return Check(lambda v: lo <= v < hi, f"in [{lo}, {hi})")
  return Check(lambda v: lo <= v <= hi, f"in [{lo}, {hi}]")


def one_of(*options: Any) -> Check:
  return Check(lambda v: v in options, f"in {tuple(options)}")


def each(check: Check) -> Check:
  """For tuples: non-empty and every entry passes `check`."""
  return Check(lambda v: len(v) > 0 and all(check.test(x) for x in v),
               lambda: f"(non-empty), each {check.text()}")


class _Required:
  def __repr__(self) -> str:
    return "REQUIRED"


REQUIRED = _Required()  # a Field without a default: the config must set it


@dataclasses.dataclass(frozen=True)
class Field:
  """One key of a block: its kind, an optional check, what it means (for messages and docs)
  and its default (what `configs/common.py` sets)."""
  kind: Kind
  check: Optional[Check] = None
  doc: str = ""
  default: Any = REQUIRED

  def expected(self) -> str:
    text = self.kind.name + (f" {self.check.text()}" if self.check else "")
    return text + (f" ({self.doc})" if self.doc else "")


@dataclasses.dataclass(frozen=True)
class Rule:
  """A constraint on several keys: `test(*values) -> bool`; keys are block-local in a block's
  spec and dotted ('train.batch_size') in `validate`'s cross-block rules. `expected` is a text
  or `expected(*values) -> text`."""
  keys: tuple[str, ...]
  test: Callable[..., bool]
  expected: Any


@dataclasses.dataclass(frozen=True)
class Spec:
  """A block's fields and rules; `a | b` merges two specs (b wins on a shared key)."""
  fields: Mapping[str, Field]
  rules: tuple[Rule, ...] = ()

  def __or__(self, other: "Spec") -> "Spec":
    return Spec({**self.fields, **other.fields}, tuple(self.rules) + tuple(other.rules))

  def only(self, *keys: str) -> "Spec":
    """The spec of some keys, with the rules among them (to read part of a block)."""
    return Spec({k: self.fields[k] for k in keys},
                tuple(r for r in self.rules if set(r.keys) <= set(keys)))

  def defaults(self) -> dict[str, Any]:
    """`{key: default}` of every field, in declaration order; ValueError if one has none."""
    missing = [k for k, f in self.fields.items() if f.default is REQUIRED]
    if missing:
      raise ValueError(f"no default declared for {missing}")
    return {k: f.default for k, f in self.fields.items()}


def _passes(test: Callable[..., bool], *values: Any) -> bool:
  try:
    return bool(test(*values))
  except Exception:  # pylint: disable=broad-except  (a test that cannot run on a value fails)
    return False


def _apply_rules(rules: Iterable[Rule], values: Mapping[str, Any], prefix: str) -> list[str]:
  problems = []
  for rule in rules:
    if all(k in values for k in rule.keys) and not _passes(rule.test,
                                                             *(values[k] for k in rule.keys)):
      named = ", ".join(f"{prefix}{k} = {values[k]!r}" for k in rule.keys)
      expected = rule.expected
      if callable(expected):
        expected = expected(*(values[k] for k in rule.keys))
      problems.append(f"{named}: expected {expected}")
  return problems


def _read(block: Any, spec: Spec, name: str) -> tuple[dict[str, Any], list[str], bool]:
  """(typed values of the good keys, problems, whether a key was missing)."""
  values, problems, missing = {}, [], False
  for key, field in spec.fields.items():
    try:
      raw = block[key]
    except (KeyError, AttributeError, TypeError, IndexError):
      problems.append(f"{name}.{key} is missing: expected {field.expected()}")
      missing = True
      continue
    try:
      value = field.kind.convert(raw)
    except (TypeError, ValueError):
      problems.append(f"{name}.{key} = {raw!r}: expected {field.expected()}")
      continue
    if field.check and not _passes(field.check.test, value):
      problems.append(f"{name}.{key} = {raw!r}: expected {field.expected()}")
      continue
    values[key] = value
  return values, problems + _apply_rules(spec.rules, values, f"{name}."), missing


def read_block(block: Any, spec: Spec, block_name: str) -> dict[str, Any]:
  """The block's values named by `spec`, converted to their kinds and checked.

  Raises:
    ConfigError naming every bad `block_name.key`, its value and what was expected
    (`ConfigKeyError`, also a KeyError, if a key is missing).
  """
  values, problems, missing = _read(block, spec, block_name)
  if problems:
    raise (ConfigKeyError if missing else ConfigError)(problems)
  return values


def validate(config: Any, specs: Mapping[str, Spec], *, rules: Iterable[Rule] = (),
             checks: Iterable[Callable[[Mapping[str, Any]], list[str]]] = ()
             ) -> dict[str, dict[str, Any]]:
  """Checks every block named in `specs`, then `rules` and `checks` across blocks.

  Args:
    config: a full config (ConfigDict or nested dict).
    specs: block name -> its `Spec` (`cmnet_jax.config_schema.block_specs()` for a run's config).
    rules: `Rule`s on dotted keys ('train.batch_size'), applied to the values that passed.
    checks: `check(flat values) -> [problem, ...]` for what a `Rule` cannot say in one line;
      `flat` maps each dotted key that passed its field to its typed value.

  Returns:
    `{block: {key: typed value}}`.

  Raises:
    ConfigError listing every problem found (one line each; also a KeyError if a key or block
    is missing).
  """
  problems, values, missing = [], {}, False
  for name, spec in specs.items():
    try:
      block = config[name]
    except (KeyError, AttributeError, TypeError):
      problems.append(f"the config has no '{name}' block (see configs/common.py)")
      missing = True
      continue
    block_values, block_problems, block_missing = _read(block, spec, name)
    values[name] = block_values
    problems += block_problems
    missing |= block_missing
  flat = {f"{b}.{k}": v for b, kv in values.items() for k, v in kv.items()}
  problems += _apply_rules(rules, flat, "")
  for check in checks:
    problems += check(flat)
  if problems:
    raise (ConfigKeyError if missing else ConfigError)(problems)
  return values
