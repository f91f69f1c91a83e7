"""One way to declare and read a config block, and `validate(config)` for a whole config.

A block's `Spec` maps each key to a `Field(kind, check, doc)` and may add `Rule`s tying keys
together. The module that reads a block declares its spec next to its code (`models.SPEC`,
`augment.SPEC`, `datasets.synthetic.generator.SETTINGS`) and reads it with `read_block`; the
blocks read by the training loop (`data`, `loss`, `optim`, `train`) are declared in
`cmnet_jax.training_blocks`.
`validate(config)` checks every block plus the rules that span blocks, and reports every problem
found at once, before anything is written.

>>> spec = Spec({'batch_size': Field(INT, at_least(1), 'clips per step'),
...              'mode': Field(STR, one_of('a', 'b'))})
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
import functools
import numbers
import os
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
  """`test(value) -> bool` and what it expects, e.g. `'>= 1'` (read after the kind's name)."""
  test: Callable[[Any], bool]
  expected: str


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
               f"(non-empty), each {check.expected}")


@dataclasses.dataclass(frozen=True)
class Field:
  """One key of a block: its kind, an optional check, and what it means (for messages)."""
  kind: Kind
  check: Optional[Check] = None
  doc: str = ""

  def expected(self) -> str:
    text = self.kind.name + (f" {self.check.expected}" if self.check else "")
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


def block_specs() -> dict[str, Spec]:
  """The spec of every block of a full config, each from the module that reads it."""
  # pylint: disable=g-import-not-at-top
  from cmnet_jax import augment
  from cmnet_jax import models
  from cmnet_jax.datasets.synthetic import generator
  from cmnet_jax import training_blocks as tb
  from cmnet_jax.align import runner as align_runner
  return {"model": models.SPEC, "data": tb.data_spec(), "synthetic": generator.SETTINGS,
          "augment": augment.SPEC, "loss": tb.loss_spec(), "optim": tb.OPTIM, "train": tb.TRAIN,
          "align": align_runner.SPEC}


def _synthetic_train_clips(subjects: int, clips_per_class: int) -> int:
  from cmnet_jax.datasets.synthetic import expressions  # pylint: disable=g-import-not-at-top
  return (subjects - 1) * clips_per_class * len(expressions.CLASS_NAMES)


CROSS_RULES = (
    Rule(("data.name", "synthetic.num_subjects"), lambda n, s: n != "synthetic" or s >= 2,
         "at least 2 synthetic subjects (leave-one-subject-out)"),
    Rule(("data.name", "train.batch_size", "synthetic.num_subjects", "synthetic.clips_per_class"),
         lambda n, b, s, c: n != "synthetic" or s < 2 or b <= _synthetic_train_clips(s, c),
         "train.batch_size <= the clips of a fold's training set ((num_subjects - 1) x "
         "clips_per_class x classes)"),
    Rule(("model.pretrained_npz",), lambda p: not p or os.path.isfile(os.path.expanduser(p)),
         "'' (random init) or an existing .npz file; make one with "
         "`python -m cmnet_jax.tools.convert_resnet18`"),
)


def _pretrained_problems(flat: Mapping[str, Any]) -> list[str]:
  """The pretrained file's contents checked before any work (one line), when it will be read."""
  path, widths = flat.get("model.pretrained_npz"), flat.get("model.widths")
  if not path or flat.get("model.encoder") != "resnet18" or widths is None:
    return []
  path = os.path.expanduser(path)
  if not os.path.isfile(path):
    return []  # named by the rule above
  st = os.stat(path)
  problem = _pretrained_problem(path, st.st_size, st.st_mtime_ns, tuple(widths))
  return [f"model.pretrained_npz = {flat['model.pretrained_npz']!r}: {problem}; make the file "
          "with `python -m cmnet_jax.tools.convert_resnet18`"] if problem else []


@functools.lru_cache(maxsize=8)
def _pretrained_problem(path: str, size: int, mtime_ns: int, widths: tuple) -> str:
  del size, mtime_ns  # the cache key: the file as it is now
  from cmnet_jax.models import pretrained  # pylint: disable=g-import-not-at-top
  return pretrained.check_npz(path, widths)


def _local_device_count() -> int:
  import jax  # pylint: disable=g-import-not-at-top
  return jax.local_device_count()


def validate(config: Any, *, specs: Optional[Mapping[str, Spec]] = None,
             device_count: Optional[int] = None) -> dict[str, dict[str, Any]]:
  """Checks every block of a full config and the rules between blocks; returns typed values.

  Args:
    config: a full config (`configs/*.py get_config()`), ConfigDict or nested dict.
    specs: replaces or adds block specs (e.g. `{'loss': training_blocks.loss_spec(extra)}`).
    device_count: local devices for the `train.num_devices` check; default: ask JAX (skipped
      for multi-process runs, where JAX must not start before `jax.distributed.initialize`).

  Raises:
    ConfigError listing every problem found (one line each).
  """
  problems, values, missing = [], {}, False
  for name, spec in {**block_specs(), **(specs or {})}.items():
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
  problems += _apply_rules(CROSS_RULES, flat, "")
  problems += _pretrained_problems(flat)
  requested = flat.get("train.num_devices", 0)
  multi_process = flat.get("train.distributed") or os.environ.get("CMNET_DISTRIBUTED") == "1"
  if requested and not multi_process:
    available = device_count if device_count is not None else _local_device_count()
    if requested > available:
      problems.append(f"train.num_devices = {requested}: expected at most the {available} local "
                      "devices (0 = all)")
  if problems:
    raise (ConfigKeyError if missing else ConfigError)(problems)
  return values
