"""The package's import structure: no cycles, no module reaching back into
the ``zoo`` facade, and no TensorFlow under another Keras backend."""

import ast
import os
import subprocess
import sys

import pytest

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "zoo")


def _modules():
    """``{module name: path}`` of every module in the package."""
    mods = {}
    for folder, _, files in os.walk(ROOT):
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(folder, f), os.path.dirname(ROOT))[:-3]
                name = rel.replace(os.sep, ".")
                mods[name[: -len(".__init__")] if name.endswith(".__init__") else name] = \
                    os.path.join(folder, f)
    return mods


MODULES = _modules()


def _imports(path, name):
    """``[(imported module, line, names)]`` of every import statement in a
    file, function-local ones included."""
    tree = ast.parse(open(path, encoding="utf8").read())
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno, None) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            out.append((base, node.lineno, [a.name for a in node.names]))
    return out


def _edges():
    """Module -> the package modules it imports (``from zoo.x import y`` is
    an edge to ``zoo.x.y`` when that is a module, else to ``zoo.x``)."""
    edges = {m: set() for m in MODULES}
    for mod, path in MODULES.items():
        for target, _, names in _imports(path, mod):
            if target != "zoo" and not target.startswith("zoo."):
                continue
            for name in names or [None]:
                sub = f"{target}.{name}" if name else None
                dest = sub if sub in MODULES else target
                if dest in MODULES and dest != mod and dest != "zoo":
                    edges[mod].add(dest)
    return edges


def test_no_module_imports_the_facade():
    bad = []
    for mod, path in MODULES.items():
        if mod == "zoo":
            continue
        for target, line, names in _imports(path, mod):
            if target == "zoo" and names is None:
                bad.append(f"{path}:{line}: import zoo")
            elif target == "zoo":
                bad += [f"{path}:{line}: from zoo import {n}" for n in names
                        if f"zoo.{n}" not in MODULES]
    assert not bad, "\n".join(bad)


def test_no_import_cycle():
    edges = _edges()
    state, stack, cycles = {}, [], []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in sorted(edges[m]):
            if state.get(n) == "open":
                cycles.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = "done"

    for m in sorted(edges):
        if m not in state:
            visit(m)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_the_cycle_check_can_fail(tmp_path, monkeypatch):
    # The checker itself: two modules importing each other are found.
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("from zoo import b\n")
    b.write_text("def f():\n    from zoo.a import x\n")
    monkeypatch.setattr(sys.modules[__name__], "MODULES", {"zoo.a": str(a), "zoo.b": str(b)})
    with pytest.raises(AssertionError, match="zoo.a -> zoo.b -> zoo.a"):
        test_no_import_cycle()


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_import_zoo_on_another_backend_leaves_tensorflow_out(backend):
    pytest.importorskip(backend)
    code = ("import sys, zoo; import keras; "
            f"assert keras.backend.backend() == {backend!r}; "
            "print(sorted(m for m in sys.modules if m == 'tensorflow' or m.startswith('tensorflow.')))")
    env = dict(os.environ, KERAS_BACKEND=backend)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300, cwd=os.path.dirname(ROOT))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]", out.stdout
