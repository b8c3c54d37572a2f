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
