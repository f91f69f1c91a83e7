"""The `--config` command-line arguments, checked before absl parses them.

ml_collections reports a missing config file only once the config is first used, an unknown
variant as a nested traceback, and an unknown `--config.<key>` as a 50-line traceback while the
flag is defined. `problems(argv, default)` finds these first and says what is wrong in a line or
two, naming the file, variant or key and the valid choices; `exit_on_problems` prints them as
`error: ...` and exits with status 2 before anything runs.

>>> argv = ['run.py', '--config', 'configs/casme2.py:quick', '--config.train.seed=1', '--nocolor']
>>> config_path(argv, 'configs/synthetic.py'), override_keys(argv)
('configs/casme2.py:quick', ['train.seed'])

For `--config.train.epochs=3` the message is `--config.train.epochs: configs/synthetic.py has no
key train.epochs; did you mean train.num_epochs? (keys of train: seed, num_epochs, ...)`.
"""
from __future__ import annotations

import difflib
import importlib.util
import os
import re
import sys
from pathlib import Path
from typing import Any, Optional, Sequence


def _flag_args(argv: Sequence[str], flag: str):
  """(name, value or None) of each `--flag...`/`-flag...` argument, up to a bare `--`."""
  args = list(argv[1:])
  for i, arg in enumerate(args):
    if arg == "--":
      return
    m = re.match(rf"^--?(no)?({re.escape(flag)}(?:\.[^=\s]*)?)(?:=(.*))?$", arg, re.S)
    if not m:
      continue
    value = m.group(3)
    if value is None and not m.group(1) and i + 1 < len(args) and not args[i + 1].startswith("-"):
      value = args[i + 1]
    yield m.group(2), value


def strip(argv: list[str], flag: str = "config") -> list[str]:
  """Removes `--flag=...`, `--flag ...` and `--flag.<key>...` arguments from `argv` (in place,
  up to a bare `--`); returns them. For modes that do not read the config file: it is Python,
  and is not executed where it is not used.

  >>> argv = ['run.py', '--mode=eval', '--config', 'x.py', '--config.train.seed=1', '--workdir=w']
  >>> strip(argv), argv
  (['--config', 'x.py', '--config.train.seed=1'], ['run.py', '--mode=eval', '--workdir=w'])
  """
  kept, removed, args, i = [argv[0]], [], argv[1:], 0
  while i < len(args):
    arg = args[i]
    if arg == "--":
      kept += args[i:]
      break
    m = re.match(rf"^--?(no)?{re.escape(flag)}(\.[^=\s]*)?(=.*)?$", arg, re.S)
    if not m:
      kept.append(arg)
      i += 1
      continue
    removed.append(arg)
    if m.group(3) is None and not m.group(1) and i + 1 < len(args) and not args[i + 1].startswith(
        "-"):
      removed.append(args[i + 1])
      i += 1
    i += 1
  argv[:] = kept
  return removed


def config_path(argv: Sequence[str], default: str, flag: str = "config") -> str:
  """The last `--config=<file[:variant]>` of `argv`, else `default`."""
  path = default
  for name, value in _flag_args(argv, flag):
    if name == flag and value is not None:
      path = value
  return path


def override_keys(argv: Sequence[str], flag: str = "config") -> list[str]:
  """Dotted keys overridden on the command line: `--config.train.seed=1` -> 'train.seed'."""
  return [name[len(flag) + 1:] for name, _ in _flag_args(argv, flag) if name != flag]


def _available(folder: Path) -> str:
  names = sorted(p.name for p in folder.glob("*.py") if p.stem not in ("__init__", "common"))
  return ", ".join(str(folder / n) for n in names) if names else "none"


def load(path_arg: str) -> tuple[Any, Optional[str]]:
  """(the config of `file[:variant]`, None) or (None, the problem in one line)."""
  file, _, variant = path_arg.partition(":")
  if not os.path.isfile(file):
    folder = Path(file).parent
    return None, (f"--config={path_arg}: no config file {file!r} (from {os.getcwd()}); "
                  f"config files in {folder}: {_available(folder) if folder.is_dir() else 'none'}")
  try:
    spec = importlib.util.spec_from_file_location("cmnet_jax_config_check", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(*([variant] if variant else []))
  except Exception as e:  # pylint: disable=broad-except  (a user's config file: report, not crash)
    kind = "" if isinstance(e, ValueError) else f"{type(e).__name__}: "
    return None, f"--config={path_arg}: {kind}{e}"
  return config, None


def _short(file: str) -> str:
  rel = os.path.relpath(file)
  return file if rel.startswith("..") else rel


def _paths(config: Any, prefix: str = "") -> list[str]:
  out = []
  for key in config.keys():
    value = config[key]
    out.append(prefix + key)
    if hasattr(value, "keys") and callable(value.keys):
      out += _paths(value, f"{prefix}{key}.")
  return out


def problems(argv: Sequence[str], default: str, flag: str = "config") -> list[str]:
  """One line per problem with the config arguments of `argv` (empty if none)."""
  path_arg = config_path(argv, default, flag)
  config, problem = load(path_arg)
  if problem:
    return [problem]
  known = _paths(config)
  out = []
  for key in override_keys(argv, flag):
    plain = re.sub(r"\[[^\]]*\]", "", key)
    if plain in known:
      continue
    block = plain.rpartition(".")[0]
    close = difflib.get_close_matches(plain, known, n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(close)}?" if close else "no close match"
    siblings = [k.rpartition(".")[2] for k in known if k.rpartition(".")[0] == block]
    where = f"keys of {block}" if block and siblings else "blocks"
    if not siblings:
      siblings = [k for k in known if "." not in k]
    out.append(f"--{flag}.{key}: {_short(path_arg.partition(':')[0])} has no key {plain}; {hint} "
               f"({where}: {', '.join(siblings)})")
  return out


def exit_on_problems(argv: Sequence[str], default: str, flag: str = "config") -> None:
  """Prints `error: <problem>` for each problem and exits with status 2; returns if none."""
  found = problems(argv, default, flag)
  for line in found:
    print(f"error: {line}", file=sys.stderr)
  if found:
    sys.exit(2)
