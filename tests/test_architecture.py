"""The rules the package lives by, checked on its source.

Imports are checked by import-linter's contracts in pyproject.toml (layers; no torch or transformers
in spec, storage, study or views; no import cycle), and cycles here too, on every module. What
imports cannot show is checked here on the syntax tree: only hpsearch/storage/optuna_private.py
touches Optuna's private API, and only hpsearch/cli/ prints or exits.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "hpsearch"
# Optuna's private attributes of a study or trial and of its storage's caching layer, and the
# private methods of its RDB storage that hpsearch calls or overrides.
PRIVATE_ATTRIBUTES = {
    "_storage", "_study_id", "_trial_id", "_backend", "_studies", "_add_trials_to_cache",
    "_create_new_trial", "_get_stale_trial_ids", "_get_prepared_new_trial",
    "_set_trial_attr_without_commit", "_set_trial_value_without_commit", "_get_trials",
    "_get_best_trial_id", "_set_trial_param",
}  # fmt: skip
# The one module that names them (hpsearch/storage/optuna_private.py).
PRIVATE_API_MODULE = "storage/optuna_private.py"
# What prints to or leaves the terminal; views render into the console the CLI hands them.
PRINTING = {
    ("print",),
    ("sys", "exit"),
    ("exit",),
    ("quit",),
    ("os", "_exit"),
    ("click", "echo"),
    ("click", "secho"),
    ("Console",),
    ("rich", "console", "Console"),
}


def modules(outside: str) -> list[Path]:
    return [
        p
        for p in sorted(PACKAGE.rglob("*.py"))
        if not p.relative_to(PACKAGE).as_posix().startswith(outside)
    ]


def dotted(node: ast.AST) -> tuple[str, ...]:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return tuple(reversed(parts))


def private_uses(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and node.attr in PRIVATE_ATTRIBUTES:
            found.append(f"{path.name}:{node.lineno} .{node.attr}")
        if isinstance(node, ast.FunctionDef) and node.name in PRIVATE_ATTRIBUTES:
            found.append(f"{path.name}:{node.lineno} def {node.name}")  # an override
        if isinstance(node, ast.Name) and node.id in ("_CachedStorage", "_StudyInfo"):
            found.append(f"{path.name}:{node.lineno} {node.id}")
        names = (
            [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else ([a.name for a in node.names] if isinstance(node, ast.Import) else [])
        )
        for name in names:
            if name.startswith("optuna") and any(part.startswith("_") for part in name.split(".")):
                found.append(f"{path.name}:{node.lineno} import {name}")
    return found


def test_only_one_module_uses_optunas_private_api():
    # That module does (it is its job) ...
    assert private_uses(PACKAGE / PRIVATE_API_MODULE)
    # ... and no other module does, by attribute, override or import.
    offenders = [use for path in modules(outside=PRIVATE_API_MODULE) for use in private_uses(path)]
    assert offenders == []


def test_only_the_cli_prints_or_exits():
    offenders = []
    for path in modules(outside="cli/"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and dotted(node.func) in PRINTING:
                offenders.append(
                    f"{path.relative_to(PACKAGE)}:{node.lineno} {'.'.join(dotted(node.func))}"
                )
    assert offenders == []


def test_the_errors_module_does_not_depend_on_click():
    # Errors are translated to the terminal at the CLI boundary, not where they are raised.
    tree = ast.parse((PACKAGE / "errors.py").read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not any(name and name.split(".")[0] == "click" for name in imported)


def test_import_contracts_are_kept():
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint_imports, "import-linter is a test dependency: pip install -e '.[test]'"
    result = subprocess.run(
        [lint_imports, "--no-cache"], cwd=REPO, capture_output=True, text=True, check=False
    )
    # All three contracts (layers; no torch/transformers in spec, storage, study, views; no
    # import cycle) are kept.
    assert result.returncode == 0, result.stdout[-3000:]
    assert "3 kept, 0 broken" in result.stdout


def test_no_module_imports_itself_back():
    import grimp

    # Every import, those inside functions included (a cycle hidden in a function is still one:
    # two modules that each need the other are one concept split in two, or two tangled); an
    # import for type annotations only is not one (it never runs).
    graph = grimp.build_graph("hpsearch", cache_dir=None, exclude_type_checking_imports=True)
    cycles = [
        " -> ".join((module, *graph.find_shortest_chain(importer=imported, imported=module)))
        for module in sorted(graph.modules)
        for imported in sorted(graph.find_modules_directly_imported_by(module))
        if graph.chain_exists(importer=imported, imported=module)
    ]
    assert cycles == []


def test_every_subpackage_names_its_public_api():
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        tree = ast.parse(init.read_text())
        exported = next(
            (
                n
                for n in tree.body
                if isinstance(n, ast.Assign)
                and any(getattr(t, "id", None) == "__all__" for t in n.targets)
            ),
            None,
        )
        # Each subpackage says what it offers; the rest of hpsearch imports those names.
        assert exported is not None, f"{init.parent.name}/__init__.py has no __all__"
        assert ast.get_docstring(tree), (
            f"{init.parent.name}/__init__.py says nothing of what it holds"
        )
