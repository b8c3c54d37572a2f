"""The package layering of pyproject.toml's [tool.importlinter] contract (docs/architecture.md):
each package imports only the layers below it. Function-local imports count too, so a cycle cannot
hide inside a function."""

import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _lint(config=None, cwd=ROOT, env=None):
    args = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
            "sys.argv = ['lint-imports', *sys.argv[1:]]; lint_imports_command()"]
    if config:
        args.append(config)
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env, timeout=300)


def test_the_package_layers_hold():
    r = _lint()
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "1 kept, 0 broken" in r.stdout


def test_the_contract_catches_an_upward_import(tmp_path):
    # the same contract over an empty package of the same layers, where the engine imports the
    # command line inside a function
    import tomllib

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        layers = tomllib.load(f)["tool"]["importlinter"]["contracts"][0]["layers"]
    pkg = tmp_path / "tfconf"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name in (n.strip() for layer in layers for n in layer.split("|")):
        (pkg / name).mkdir()
        (pkg / name / "__init__.py").write_text("")
    (pkg / "engine" / "graph.py").write_text("def f():\n    from tfconf.cli import app\n")
    (pkg / "cli" / "app.py").write_text("import tfconf.engine.graph\n")
    cfg = tmp_path / "contract.toml"
    with open(os.path.join(ROOT, "pyproject.toml")) as f:
        text = f.read()
    cfg.write_text(text[text.index("[tool.importlinter]"):])
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    r = _lint(str(cfg), cwd=tmp_path, env=env)
    assert r.returncode != 0 and "tfconf.engine.graph -> tfconf.cli" in r.stdout, r.stdout[-3000:] + r.stderr


def test_no_module_of_tfconf_imports_the_facade():
    # `import tfconf as tc` inside tfconf would reach tc.train and tc.distributed from any layer;
    # tfconf's modules import tfconf.engine.api as tc instead
    import grimp

    graph = grimp.build_graph("tfconf")
    assert graph.find_modules_that_directly_import("tfconf") == set()
    assert "tfconf.frontend.layers.vision" in graph.find_modules_that_directly_import("tfconf.engine.api")


def _tfconf_imports():
    """{module: (module-level tfconf imports, [(function-local tfconf import, line)])} from the source."""
    import ast

    pkg_root = os.path.join(ROOT, "tfconf")
    files = {}
    for dirpath, _, names in os.walk(pkg_root):
        for n in names:
            if n.endswith(".py"):
                rel = os.path.relpath(os.path.join(dirpath, n), ROOT)[:-3].replace(os.sep, ".")
                files[rel[:-9] if rel.endswith(".__init__") else rel] = os.path.join(dirpath, n)

    def targets(module, node):
        if isinstance(node, ast.Import):
            return [a.name for a in node.names]
        package = module if files[module].endswith("__init__.py") else module.rsplit(".", 1)[0]
        base = node.module or ""
        if node.level:
            parts = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join(parts + ([base] if base else []))
        return [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]

    out = {}
    for module, path in files.items():
        top, local = set(), []

        def walk(node, in_function):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.Import, ast.ImportFrom)):
                    for t in targets(module, child):
                        if t.startswith("tfconf"):
                            (local.append((t, child.lineno)) if in_function else top.add(t))
                elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                    walk(child, True)
                elif not (isinstance(child, ast.If) and getattr(child.test, "id", "") == "TYPE_CHECKING"):
                    walk(child, in_function)

        with open(path) as f:
            walk(ast.parse(f.read()), False)
        out[module] = (top, local)
    return out


def test_no_function_local_import_dodges_a_cycle():
    # a function-local import is for an optional or heavy dependency, never to hide a cycle: the
    # module it imports must not import (at module level, transitively) the module importing it
    imports = _tfconf_imports()

    def reaches(start, goal):
        seen, stack = set(), [start]
        while stack:
            m = stack.pop()
            if m == goal:
                return True
            if m in seen or m not in imports:
                continue
            seen.add(m)
            stack.extend(imports[m][0])
        return False

    dodging = [f"{m}:{line} imports {t} inside a function; {t} imports {m}"
               for m, (_, local) in imports.items() for t, line in local if reaches(t, m)]
    assert not dodging, "\n".join(dodging)
    assert sum(len(local) for _, local in imports.values()) > 0  # the scan sees function-local imports
