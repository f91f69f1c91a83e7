"""Plug-ins: a user's own modules, imported before a config is read.

`--plugins=mypkg.mylosses,other` (`run.py`, `cmnet-jax`) imports each module, in order, before
the config file runs, so what it registers (a loss term with `losses.register_term`, whose
`loss.*` keys then exist) is part of the config and of the run. (Database readers are found in
`cmnet_jax/datasets/` only, and `model.encoder`'s choices are fixed when `cmnet_jax.models` is
imported: neither can be added this way yet.)
A module registers what it adds when it is imported, or in a function `register()` without
arguments, which `load` calls once after importing it (so that importing the module, e.g. in a
test, changes nothing; `examples/custom_loss.py` is one). A module is found as any Python import
is: installed, or in a folder on PYTHONPATH (`PYTHONPATH=.` for the current folder); `run.py`
also finds those of its checkout (`--plugins=examples.custom_loss`). The run records the names in
its config.json (top-level key `plugins`, only when there are some), and eval, predict, spot and
a resume import them again from there.

>>> parse(' mypkg.mylosses , other,mypkg.mylosses', source='--plugins')
['mypkg.mylosses', 'other']
>>> load(['no_such_plugin_module'], source='--plugins')
Traceback (most recent call last):
...
cmnet_jax.plugins.PluginError: --plugins: no module named 'no_such_plugin_module' ...
"""
from __future__ import annotations

import contextlib
import importlib
import re
import sys
from typing import Any, Iterable, Optional

from cmnet_jax import errors

KEY = "plugins"  # the config key that records them (config.json)
_REGISTERED: set[str] = set()  # modules whose register() ran
_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


class PluginError(errors.RunError):
  """A plug-in module is missing, misnamed or failed while importing (the message names it)."""


def parse(value: Optional[str | Iterable[str]], *, source: str) -> list[str]:
  """Module names of `a.b,c` (or a list of them), in order, each once; an error naming `source`
  for a name that is not a dotted Python module name."""
  names = value.split(",") if isinstance(value, str) else list(value or [])
  names = [str(n).strip() for n in names if str(n).strip()]
  for name in names:
    if not _NAME.fullmatch(name):
      raise PluginError(f"{source}: {name!r} is not a module name; expected dotted Python "
                        "module names separated by commas, e.g. --plugins=mypkg.mylosses,other")
  return list(dict.fromkeys(names))


def load(names: Iterable[str], *, source: str) -> None:
  """Imports each module (again only if not imported yet); `source` says where the names came
  from (`--plugins`, or a workdir's config.json) in the error."""
  for name in names:
    try:
      module = importlib.import_module(name)
      register = getattr(module, "register", None)
      if callable(register) and name not in _REGISTERED:
        register()
        _REGISTERED.add(name)
    except ModuleNotFoundError as e:
      if e.name and (name == e.name or name.startswith(e.name + ".")):
        raise PluginError(
            f"{source}: no module named {name!r} (looked in: {', '.join(sys.path[:4]) or '.'}"
            f"{' ...' if len(sys.path) > 4 else ''}); install it, or put the folder holding it "
            "on PYTHONPATH (PYTHONPATH=. for the current folder)") from None
      raise PluginError(f"{source}: plug-in {name!r} imports a module that is not installed: "
                        f"{e}") from None
    except Exception as e:  # pylint: disable=broad-except  (a user's module: name it)
      raise PluginError(f"{source}: plug-in {name!r} failed while importing or registering: "
                        f"{type(e).__name__}: {e} (python -c 'import {name}' shows where)") from e


def recorded(config: Any) -> list[str]:
  """The plug-ins a recorded config (config.json's dict, or a ConfigDict) names; [] if none."""
  value = config.get(KEY) if hasattr(config, "get") else None
  return parse(value, source=f"the config's key {KEY!r}")


def record(config: Any, names: list[str]) -> None:
  """Writes `names` into `config` (key `plugins`) when there are some; a config without
  plug-ins stays as configs written before plug-ins existed."""
  if names:
    with config.unlocked() if hasattr(config, "unlocked") else contextlib.nullcontext():
      config[KEY] = list(names)
