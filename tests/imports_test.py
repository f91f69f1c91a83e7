"""The library's module-level import graph has no cycle, and the library never imports `configs`
(code or docstring examples): `configs/` is the checkout's, the library is installable alone."""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "cmnet_jax"


def _module_name(path: Path) -> str:
  parts = path.relative_to(ROOT).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
  return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _top_level(body):
  """Statements run when the module is imported: not function bodies (class bodies are)."""
  for node in body:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
      continue
    yield node
    for field in ("body", "orelse", "finalbody", "handlers"):
      inner = getattr(node, field, None)
      if isinstance(inner, list):
        yield from _top_level(inner)


def _imported(node, module: str, is_package: bool, known) -> list[str]:
  """Library modules an import statement names (a `from a import b` names a.b if it is one)."""
  if isinstance(node, ast.Import):
    return [a.name for a in node.names if a.name in known]
  if not isinstance(node, ast.ImportFrom):
    return []
  base = node.module or ""
  if node.level:
    parts = module.split(".")
    anchor = parts if is_package else parts[:-1]
    anchor = anchor[:len(anchor) - (node.level - 1)]
    base = ".".join(anchor + ([base] if base else []))
  out = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known]
  if len(out) < len(node.names) and base in known:
    out.append(base)
  return out


def import_graph(known=None) -> dict[str, set[str]]:
  """module -> the library modules it imports when it is imported (module level only)."""
  modules = _modules()
  known = known or set(modules)
  graph = {}
  for name, path in modules.items():
    tree = ast.parse(path.read_text(), str(path))
    graph[name] = {m for node in _top_level(tree.body)
                   for m in _imported(node, name, path.name == "__init__.py", known)
                   if m != name}
  return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
  """One cycle as [a, b, ..., a], or [] if there is none (depth-first search)."""
  state, stack = {}, []

  def visit(node):
    state[node] = "open"
    stack.append(node)
    for nxt in sorted(graph.get(node, ())):
      if state.get(nxt) == "open":
        return stack[stack.index(nxt):] + [nxt]
      if nxt not in state:
        found = visit(nxt)
        if found:
          return found
    stack.pop()
    state[node] = "done"
    return []

  for node in sorted(graph):
    if node not in state:
      found = visit(node)
      if found:
        return found
  return []


def test_the_graph_sees_the_imports_it_should():
  graph = import_graph()
  assert "cmnet_jax.config_blocks" in graph["cmnet_jax.models"]
  assert "cmnet_jax.models.convolution" in graph["cmnet_jax.models.onednn"]
  assert "cmnet_jax.losses.terms" in graph["cmnet_jax.losses.cmnet_terms"]
  assert "cmnet_jax.datasets.index" in graph["cmnet_jax.datasets.registry"]
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
  assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_no_import_cycle_in_the_library():
  cycle = find_cycle(import_graph())
  assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_the_validator_imports_nothing_of_the_library():
  assert not import_graph()["cmnet_jax.config_blocks"]


def test_the_library_never_imports_configs():
  """Neither its code (any level, functions included) nor its docstring examples."""
  found = []
  for name, path in _modules().items():
    text = path.read_text()
    for node in ast.walk(ast.parse(text)):
      names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
               [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
      found += [f"{name}: import {n}" for n in names if n.split(".")[0] == "configs"]
    found += [f"{name}: {m.group(0).strip()}" for m in re.finditer(
        r"^\s*(>>>|\.\.\.)\s*(from|import)\s+configs\b.*$", text, re.MULTILINE)]
  assert not found, found
