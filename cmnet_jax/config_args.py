"""The `--config` command-line arguments: the config they name, read and checked before absl
parses the overrides.

`--config` is a shipped config by name (`casme2`, `synthetic:quick`: `configs/` of the checkout,
installed as the package `cmnet_jax.configs`, so found from any folder) or a file by path
(`configs/casme2.py:quick`, or one's own). `load` reads it; ml_collections then only applies the
`--config.<key>=value` overrides. ml_collections reports an unknown `--config.<key>` as a 50-line
traceback: `problems(argv, default)` finds it, a missing file or an unknown variant first and
says what is wrong in a line or two, naming the file, variant or key and the valid choices.

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


def strip(argv: list[str], flag: str = "config", *, keep_overrides: bool = False) -> list[str]:
  """Removes `--flag=...`, `--flag ...` and `--flag.<key>...` arguments from `argv` (in place,
  up to a bare `--`); returns them. For modes that do not read the config file: it is Python,
  and is not executed where it is not used. `keep_overrides`: removes `--flag=...` and
  `--flag ...` only (the file, once read), leaving the `--flag.<key>=...` overrides.

  >>> argv = ['run.py', '--mode=eval', '--config', 'x.py', '--config.train.seed=1', '--workdir=w']
  >>> strip(argv), argv
  (['--config', 'x.py', '--config.train.seed=1'], ['run.py', '--mode=eval', '--workdir=w'])
  >>> argv = ['run.py', '--config=x.py', '--config.train.seed=1']
  >>> strip(argv, keep_overrides=True), argv
  (['--config=x.py'], ['run.py', '--config.train.seed=1'])
  """
  kept, removed, args, i = [argv[0]], [], argv[1:], 0
  while i < len(args):
    arg = args[i]
    if arg == "--":
      kept += args[i:]
      break
    m = re.match(rf"^--?(no)?{re.escape(flag)}(\.[^=\s]*)?(=.*)?$", arg, re.S)
    if not m or (keep_overrides and m.group(2)):
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


CONFIGS_PACKAGE = "cmnet_jax.configs"  # the shipped configs/ folder, as a package


def configs_folder() -> Path:
  """The folder of the shipped configs: `cmnet_jax/configs` where cmnet_jax is installed from a
  wheel, the checkout's top-level `configs/` (next to `cmnet_jax/`) otherwise."""
  import cmnet_jax  # pylint: disable=import-outside-toplevel
  here = Path(cmnet_jax.__file__).resolve().parent
  for folder in (here / "configs", here.parent / "configs"):
    if (folder / "common.py").is_file():
      return folder
  raise FileNotFoundError(f"no configs folder next to {here} (neither {here / 'configs'} nor "
                          f"{here.parent / 'configs'}): reinstall cmnet_jax")


def configs_package():
  """The `cmnet_jax.configs` package (imported; from the checkout's `configs/` when cmnet_jax
  is not installed with it), so that its files' relative imports and `import
  cmnet_jax.configs.<name>` work from any folder."""
  if CONFIGS_PACKAGE in sys.modules:
    return sys.modules[CONFIGS_PACKAGE]
  if importlib.util.find_spec(CONFIGS_PACKAGE) is None:  # a checkout: register its configs/
    folder = configs_folder()
    spec = importlib.util.spec_from_file_location(
        CONFIGS_PACKAGE, folder / "__init__.py", submodule_search_locations=[str(folder)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[CONFIGS_PACKAGE] = module
    try:
      spec.loader.exec_module(module)
    except BaseException:
      del sys.modules[CONFIGS_PACKAGE]
      raise
  return importlib.import_module(CONFIGS_PACKAGE)


def config_names() -> list[str]:
  """Names of the shipped configs (`--config=<name>[:variant]`)."""
  return sorted(p.stem for p in configs_folder().glob("*.py")
                if p.stem not in ("__init__", "common"))


def _available(folder: Path) -> str:
  names = sorted(p.name for p in folder.glob("*.py") if p.stem not in ("__init__", "common"))
  return ", ".join(str(folder / n) for n in names) if names else "none"


def _is_name(file: str) -> bool:
  return re.fullmatch(r"[A-Za-z_]\w*", file) is not None


def _config_module(file: str):
  """The module of a config given by name (`casme2`) or by path (`configs/casme2.py`, or a file
  of one's own anywhere). The shipped ones are imported as `cmnet_jax.configs.<name>`."""
  package = configs_package()
  folder = Path(package.__path__[0]).resolve()
  if _is_name(file):
    return importlib.import_module(f"{CONFIGS_PACKAGE}.{file}")
  path = Path(file).resolve()
  if path.parent == folder and path.suffix == ".py":
    return importlib.import_module(f"{CONFIGS_PACKAGE}.{path.stem}")
  # A file of one's own: `from cmnet_jax.configs import common` reaches the shared blocks.
  spec = importlib.util.spec_from_file_location("cmnet_jax_config_file", file)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def load(path_arg: str) -> tuple[Any, Optional[str]]:
  """(the config of `file[:variant]` or `name[:variant]`, None) or (None, the problem in one
  line). A name (`casme2`, `synthetic:quick`) is a config shipped with cmnet_jax, found from any
  folder; anything else is a path."""
  file, _, variant = path_arg.partition(":")
  if _is_name(file):
    names = config_names()
    if file not in names:
      return None, (f"--config={path_arg}: no config named {file!r}; the shipped configs: "
                    f"{', '.join(names)} (or give a file: --config=path/to/config.py)")
  elif not os.path.isfile(file):
    folder = Path(file).parent
    return None, (f"--config={path_arg}: no config file {file!r} (from {os.getcwd()}); "
                  f"config files in {folder}: {_available(folder) if folder.is_dir() else 'none'}"
                  f"; shipped configs, by name: {', '.join(config_names())}")
  try:
    module = _config_module(file)
    config = module.get_config(*([variant] if variant else []))
  except Exception as e:  # pylint: disable=broad-except  (a user's config file: report, not crash)
    kind = "" if isinstance(e, ValueError) else f"{type(e).__name__}: "
    hint = (" (a config file outside the shipped configs/ imports the shared blocks as `from "
            "cmnet_jax.configs import common`)" if isinstance(e, ImportError)
            and "relative import" in str(e) else "")
    return None, f"--config={path_arg}: {kind}{e}{hint}"
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


def problems(argv: Sequence[str], default: str, flag: str = "config", *,
             config: Any = None) -> list[str]:
  """One line per problem with the config arguments of `argv` (empty if none); `config`: the
  one `argv` names, if already loaded."""
  path_arg = config_path(argv, default, flag)
  if config is None:
    config, problem = load(path_arg)
    if problem:
      return [problem]
  known = _paths(config)
  out = []
  for key in override_keys(argv, flag):
    plain = re.sub(r"\[[^\]]*\]", "", key)
    if plain.split(".")[0] == "plugins":
      out.append(f"--{flag}.{key}: the plug-ins are imported before the config is read: give "
                 "them as --plugins=module[,module]")
      continue
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
