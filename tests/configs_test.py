"""Every config builds, is locked, has a quick variant, and reads no key the library ignores."""
import re
from pathlib import Path

import ml_collections
import pytest
from ml_collections import config_flags  # noqa: F401  (the loader run.py uses)

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p.stem for p in (ROOT / "configs").glob("*.py")
                 if p.stem not in ("__init__", "common"))
LIBRARY = "\n".join(p.read_text() for p in (ROOT / "cmnet_jax").rglob("*.py"))


def _load(name, arg=""):
  module = __import__(f"configs.{name}", fromlist=["get_config"])
  return module.get_config(arg)


def _leaves(config, prefix=""):
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      yield from _leaves(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}"


def test_every_database_has_a_config():
  assert set(CONFIGS) >= {"synthetic", "casme2", "samm", "smic", "casme3", "megc2019", "tiny"}


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("arg", ["", "quick"])
def test_config_builds_locked_and_documented(name, arg):
  config = _load(name, arg)
  assert config.is_locked
  with pytest.raises(AttributeError):
    config.train.not_a_key = 1  # typos are refused
  doc = __import__(f"configs.{name}", fromlist=["x"]).__doc__
  assert f"python run.py --config=configs/{name}.py" in doc


@pytest.mark.parametrize("name", CONFIGS)
def test_no_key_is_unused(name):
  """A key is read if the library names it (attribute access or string literal)."""
  unused = [k for k in _leaves(_load(name))
            if not re.search(rf"(\.|['\"]){re.escape(k.split('.')[-1])}\b", LIBRARY)]
  assert not unused, f"configs/{name}.py has keys no library code reads: {unused}"


def test_unknown_variant_is_refused():
  with pytest.raises(ValueError, match="unknown variant"):
    _load("synthetic", "qiuck")
