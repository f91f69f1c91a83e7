"""Every config builds, is locked, has a quick variant; its keys are the declared ones, every
declared key is read by the library and every key the library reads is declared."""
import ast
import collections.abc
from pathlib import Path

import jax
import jax.numpy as jnp

import pytest
from ml_collections import config_flags  # noqa: F401  (the loader run.py uses)

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p.stem for p in (ROOT / "configs").glob("*.py")
                 if p.stem not in ("__init__", "common"))
LIBRARY = {p: ast.parse(p.read_text(), str(p)) for p in sorted((ROOT / "cmnet_jax").rglob("*.py"))}
BLOCKS = ("model", "data", "synthetic", "augment", "loss", "optim", "train", "align")
# ConfigDict methods, not keys.
METHODS = {"to_dict", "get", "unlocked", "copy_and_resolve_references", "items", "keys", "values",
           "lock", "ignore_type", "update", "to_json", "copy"}


def _load(name, arg=""):
  module = __import__(f"configs.{name}", fromlist=["get_config"])
  return module.get_config(arg)


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


def _declared():
  from cmnet_jax import config_schema
  return {block: dict(spec.fields) for block, spec in config_schema.block_specs().items()}


@pytest.mark.parametrize("name", CONFIGS)
def test_config_keys_are_the_declared_keys(name):
  """A config neither lacks a declared key nor adds one the library does not declare."""
  declared = _declared()
  config = _load(name).to_dict()
  assert set(config) == set(declared)
  for block, fields in declared.items():
    assert set(config[block]) == set(fields), block


def _block_of(node, aliases):
  """The config block an expression stands for: `<...config>.<block>`, a `<block>_config` name,
  a local name assigned one of these, or a call on one (`read_block(config.align, ...)`)."""
  if isinstance(node, ast.Attribute) and node.attr in BLOCKS:
    return node.attr if "config" in ast.unparse(node.value).split(".")[-1] else None
  if isinstance(node, ast.Name):
    return aliases.get(node.id) or next((b for b in BLOCKS if node.id == f"{b}_config"), None)
  if isinstance(node, ast.Call) and node.args:
    return _block_of(node.args[0], aliases)
  return None


def _block_reads(tree):
  """(block, key) of every read the code spells on a known block: `config.train.seed`,
  `c['encoder']` where `c = read_block(model_config, ...)`, `config.data.get('classes')`."""
  found = set()
  scopes = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
  for scope in scopes + [tree]:
    aliases = {}
    for n in ast.walk(scope):
      if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name):
        block = _block_of(n.value, aliases)
        if block:
          aliases[n.targets[0].id] = block
    for n in ast.walk(scope):
      if isinstance(n, ast.Attribute) and n.attr not in METHODS and not isinstance(n.value,
                                                                                   ast.Call):
        key, block = n.attr, _block_of(n.value, aliases)
      elif isinstance(n, ast.Subscript) and isinstance(n.slice, ast.Constant):
        key, block = n.slice.value, _block_of(n.value, aliases)
      elif (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and
            n.func.attr == "get" and n.args and isinstance(n.args[0], ast.Constant)):
        key, block = n.args[0].value, _block_of(n.func.value, aliases)
      else:
        continue
      if block and isinstance(key, str):
        found.add((block, key))
  return found


def _names_read(tree):
  """Every name the code reads as an attribute (`x.seed`), a constant subscript (`c['seed']`)
  or a `.get('seed')`: not docstrings, comments, f-strings nor a declaration's dict keys."""
  names = set()
  for n in ast.walk(tree):
    if isinstance(n, ast.Attribute):
      names.add(n.attr)
    elif isinstance(n, ast.Subscript) and isinstance(n.slice, ast.Constant):
      names.add(n.slice.value)
    elif (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "get"
          and n.args and isinstance(n.args[0], ast.Constant)):
      names.add(n.args[0].value)
  return names


def test_every_key_the_library_reads_is_declared():
  declared = _declared()
  reads = collections.defaultdict(set)
  for path, tree in LIBRARY.items():
    for block, key in _block_reads(tree):
      reads[(block, key)].add(path.relative_to(ROOT).as_posix())
  assert len(reads) > 40  # the walk sees the reads (config.train.seed, c['encoder'], ...)
  undeclared = {f"{b}.{k}": sorted(w) for (b, k), w in reads.items() if k not in declared[b]}
  assert not undeclared, f"read but declared nowhere: {undeclared}"


def test_every_declared_key_is_read():
  """Block keys: read somewhere in the library's code. Loss terms: the registry reads each
  coefficient; each option is read by its term (`test_every_loss_option_is_read_by_its_term`)."""
  from cmnet_jax import losses
  by_terms = {k for t in losses.TERMS.values() for k in (t.coefficient_key, *t.options)}
  names = set().union(*(_names_read(tree) for tree in LIBRARY.values()))
  unread = [f"{block}.{key}" for block, fields in _declared().items() for key in fields
            if not (block == "loss" and key in by_terms) and key not in names]
  assert not unread, f"declared but read nowhere in cmnet_jax/: {unread}"


class _Recording(collections.abc.Mapping):
  def __init__(self, values):
    self.values, self.read = dict(values), set()

  def __getitem__(self, key):
    self.read.add(key)
    return self.values[key]

  def __iter__(self):
    return iter(self.values)

  def __len__(self):
    return len(self.values)


def _step_inputs(batch=2, frames=5, dim=4, classes=3):
  from cmnet_jax import losses
  from cmnet_jax.models import CMNetOutput
  key = jax.random.key(0)
  apex = jnp.array([2, 3])
  s = jax.nn.sigmoid(jax.random.normal(key, (batch, frames)))
  z = jax.random.normal(key, (batch, frames, dim))
  output = CMNetOutput(jnp.zeros((batch, classes)), s, z, z)
  clips = jax.random.randint(key, (batch, frames, 8, 8, 3), 0, 255).astype(jnp.uint8)
  prototype = lambda: jax.vmap(lambda a: losses.intensity_prototype(frames, a))(apex)
  return losses.StepInputs(clips, jnp.array([0, 1]), apex, output, losses.terms.stream_keys(key),
                           lambda: z + 0.1, prototype)


def _peak(step, options):
  s = step.output.intensities
  return jnp.maximum(0.0, options["peak_margin"] - s.max(-1) + s.mean(-1))


def test_every_loss_option_is_read_by_its_term():
  """Each registered term (a user's too) reads each option it declares when it runs."""
  from cmnet_jax import config_blocks
  from cmnet_jax import losses
  step = _step_inputs()
  losses.register_term(losses.Term("peak", _peak, options={
      "peak_margin": losses.Option(0.1, "margin", check=config_blocks.positive),
      "peak_unused": losses.Option(1, "declared, never read")}))
  try:
    unread = {}
    for term in losses.TERMS.values():
      options = _Recording({k: o.default for k, o in term.options.items()})
      term.fn(step, options)
      unread[term.name] = set(term.options) - options.read
  finally:
    losses.unregister_term("peak")
  assert unread.pop("peak") == {"peak_unused"}  # the walk sees an option its term ignores
  assert not any(unread.values()), unread


def test_unknown_variant_is_refused():
  with pytest.raises(ValueError, match="unknown variant"):
    _load("synthetic", "qiuck")
