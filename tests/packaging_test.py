"""`pip install .` (issue 24): the `cmnet-jax` command and the configs, by name, from any folder.

The build is setuptools' own `build_py` + `egg_info` on a copy of the project (what a wheel holds,
without the `wheel` package): the installed layout is loaded from another folder in a new process.
"""
import importlib
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_command_entry_point_resolves_to_the_cli():
  target = PYPROJECT["project"]["scripts"]["cmnet-jax"]
  module, _, attr = target.partition(":")
  main = getattr(importlib.import_module(module), attr)
  from cmnet_jax import cli  # pylint: disable=g-import-not-at-top
  assert callable(main) and main is cli.main


def test_every_subpackage_is_listed_and_configs_is_mapped_not_top_level():
  listed = PYPROJECT["tool"]["setuptools"]["packages"]
  found = sorted(".".join(p.parent.relative_to(ROOT).parts)
                 for p in (ROOT / "cmnet_jax").rglob("__init__.py"))
  assert sorted(listed) == sorted(found + ["cmnet_jax.configs"])
  assert PYPROJECT["tool"]["setuptools"]["package-dir"] == {"cmnet_jax.configs": "configs"}
  assert "configs" not in listed


def test_the_built_package_holds_the_configs_and_the_command_and_loads_them_by_name(tmp_path):
  src = tmp_path / "src"
  src.mkdir()
  for name in ("pyproject.toml", "README.md"):
    shutil.copy(ROOT / name, src / name)
  ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
  for name in ("cmnet_jax", "configs"):
    shutil.copytree(ROOT / name, src / name, ignore=ignore)
  r = subprocess.run([sys.executable, "-c", "from setuptools import setup; setup()", "-q",
                      "build_py", "--build-lib", str(tmp_path / "lib"), "egg_info", "--egg-base",
                      str(tmp_path)], cwd=src, capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr
  lib = tmp_path / "lib"
  assert sorted(p.name for p in lib.iterdir()) == ["cmnet_jax"]   # no top-level configs
  shipped = sorted(p.name for p in (ROOT / "configs").glob("*.py"))
  assert sorted(p.name for p in (lib / "cmnet_jax" / "configs").glob("*.py")) == shipped
  assert (lib / "cmnet_jax" / "models" / "onednn_conv.cc").is_file()
  (entry_points,) = tmp_path.glob("*.egg-info/entry_points.txt")
  assert "cmnet-jax = cmnet_jax.cli:main" in entry_points.read_text().splitlines()
  # Installed: the shipped configs by name, from a folder with no configs/ in it.
  elsewhere = tmp_path / "elsewhere"
  elsewhere.mkdir()
  code = ("import sys, cmnet_jax; from cmnet_jax import config_args\n"
          "for arg in sys.argv[1:]:\n"
          "  c, problem = config_args.load(arg)\n"
          "  print(arg, problem, c and (c.data.name, c.train.num_epochs))\n"
          "print(cmnet_jax.__file__); print(sys.modules['cmnet_jax.configs'].__file__)\n"
          "print('configs' in sys.modules)\n"
          "from cmnet_jax import workdir\n"   # defaults for keys an older config.json lacks
          "print(workdir.config_defaults({'data': {'name': 'casme2'}})['data.name'])")
  r = subprocess.run([sys.executable, "-c", code, "synthetic:quick", "casme2", "synthetic"],
                     cwd=elsewhere, env={"PYTHONPATH": str(lib), "PATH": "/usr/bin:/bin"},
                     capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr
  from configs import casme2, synthetic  # pylint: disable=g-import-not-at-top
  lines = r.stdout.splitlines()
  assert lines[:3] == [
      f"synthetic:quick None ('synthetic', {synthetic.get_config('quick').train.num_epochs})",
      f"casme2 None ('casme2', {casme2.get_config().train.num_epochs})",
      f"synthetic None ('synthetic', {synthetic.get_config().train.num_epochs})"]
  assert lines[3:] == [str(lib / "cmnet_jax" / "__init__.py"),
                       str(lib / "cmnet_jax" / "configs" / "__init__.py"), "False", "casme2"]
