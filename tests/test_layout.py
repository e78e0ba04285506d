"""The package layout: import directions between parts, no import circles, file sizes.

Each subpackage's __init__ docstring says what it may import; ALLOWED below
is the same rule as data. Every import counts, also those inside functions
(a lazy import still ties the parts together).
"""

import ast
import os
import pathlib

import pytest

import padinv_jax

PACKAGE = pathlib.Path(padinv_jax.__file__).parent

# part -> the parts it may import (besides itself). Data flows one way:
# files -> convert -> storage -> pure functions; images -> data -> training.
ALLOWED = {
    "models": set(),
    "losses": {"models"},
    "evaluation": {"models", "losses"},
    "data": {"models"},
    "inversion": {"models", "losses", "evaluation"},
    "storage": {"models", "losses", "evaluation", "inversion"},
    "convert": {"models", "losses", "storage"},
    "training": {"models", "losses", "evaluation", "data", "inversion",
                 "storage", "convert"},
    "cli": {"models", "losses", "evaluation", "data", "inversion", "storage",
            "convert"},
}
MAX_LINES = 500


def _modules(root: pathlib.Path):
  """{dotted module name: path} for every .py file under root (a package)."""
  out = {}
  for path in sorted(root.rglob("*.py")):
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
      parts = parts[:-1]
    out[".".join(parts)] = path
  return out


def _imports(path: pathlib.Path, modules, package: str):
  """The package's modules that a file imports (resolving from-imports)."""
  tree = ast.parse(path.read_text(), filename=str(path))
  found = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules
               else node.module for a in node.names]
    else:
      continue
    found.update(n for n in names if n == package or
                 n.startswith(package + "."))
  return found


def _part(module: str):
  parts = module.split(".")
  return parts[1] if len(parts) > 1 and parts[1] in ALLOWED else None


def layering_violations(root: pathlib.Path):
  """Lines 'a imports b' for every import against ALLOWED, under root."""
  package = root.name
  modules = _modules(root)
  bad = []
  for mod, path in modules.items():
    src = _part(mod)
    if src is None:
      continue  # the top-level API and __main__ shims may import anything
    for dst_mod in _imports(path, modules, package):
      dst = _part(dst_mod)
      if dst is None and dst_mod != package:
        continue
      if dst is None or (dst != src and dst not in ALLOWED[src]):
        bad.append(f"{mod} ({src}) imports {dst_mod} ({dst or 'the top'})")
  return bad


def import_cycles(root: pathlib.Path):
  """Strongly connected groups of modules that import each other."""
  package = root.name
  modules = _modules(root)
  graph = {m: {d for d in _imports(p, modules, package) if d in modules}
           for m, p in modules.items()}
  # A module importing a submodule also runs its package's __init__; the
  # __init__ files here import nothing below them, so edges as written do.
  index, low, stack, on, out = {}, {}, [], set(), []

  def visit(v):  # Tarjan
    index[v] = low[v] = len(index)
    stack.append(v)
    on.add(v)
    for w in graph[v]:
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      group = []
      while True:
        w = stack.pop()
        on.discard(w)
        group.append(w)
        if w == v:
          break
      if len(group) > 1 or v in graph[v]:
        out.append(sorted(group))

  for v in graph:
    if v not in index:
      visit(v)
  return out


def test_every_part_has_a_documented_init():
  for part in ALLOWED:
    init = PACKAGE / part / "__init__.py"
    assert init.is_file(), f"padinv_jax/{part}/ is missing"
    doc = ast.get_docstring(ast.parse(init.read_text()))
    assert doc and "import" in doc, (
        f"padinv_jax/{part}/__init__.py must open with a docstring that says "
        "what the part may import")


def test_no_part_imports_upward():
  assert layering_violations(PACKAGE) == []


def test_no_import_cycles():
  assert import_cycles(PACKAGE) == []


def test_no_file_over_500_lines():
  roots = [PACKAGE] + [PACKAGE.parent / d for d in
                       ("tests", "benchmarks", "experiments", "configs")]
  long = [f"{p} ({n} lines)" for root in roots if root.is_dir()
          for p in root.rglob("*.py")
          if (n := len(p.read_text().splitlines())) > MAX_LINES]
  assert long == []


def _fake_package(tmp_path, files):
  root = tmp_path / "padinv_jax"
  for rel, text in files.items():
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
  return root


@pytest.mark.parametrize("stmt", [
    "from padinv_jax.training import trainer\n",
    "import padinv_jax.training.trainer\n",
    "def f():\n  from padinv_jax.cli import main\n",
    "from padinv_jax import training\n",
])
def test_checker_catches_an_upward_import(tmp_path, stmt):
  root = _fake_package(tmp_path, {
      "__init__.py": "",
      "models/__init__.py": '"""May import: nothing."""\n',
      "models/ops.py": stmt,
      "training/__init__.py": "",
      "training/trainer.py": "from padinv_jax.models import ops\n",
      "cli/__init__.py": "",
      "cli/main.py": "",
  })
  bad = layering_violations(root)
  assert len(bad) == 1 and bad[0].startswith("padinv_jax.models.ops"), bad


def test_checker_catches_a_cycle(tmp_path):
  root = _fake_package(tmp_path, {
      "__init__.py": "",
      "convert/__init__.py": "",
      "convert/a.py": "from padinv_jax.convert import b\n",
      "convert/b.py": "def f():\n  from padinv_jax.convert import a\n",
  })
  assert import_cycles(root) == [["padinv_jax.convert.a",
                                  "padinv_jax.convert.b"]]
  assert os.path.isdir(root)
