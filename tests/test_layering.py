"""The package's layers: a lower one never imports a higher one (compressors never import the pipelines that call
them; the training service and the evaluators import neither). Read from the source's import statements, so a
lazy import inside a function counts too."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "edgecomp"

# Bottom to top: a package may import its own layer and those before it.
LAYERS = (
    ("errors", "config", "settings"),
    ("data",),
    ("models",),
    ("evaluate",),
    ("distill",),
    ("lit",),
    ("compress",),
    ("report", "tracking"),
    ("pipelines", "cli"),
)
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def imported_subpackages(path: Path) -> set[str]:
    """The edgecomp subpackages (or top-level modules) `path` imports, e.g. {"evaluate", "lit"}."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
            if node.module == "edgecomp":  # `from edgecomp import pipelines`
                modules = [f"edgecomp.{alias.name}" for alias in node.names]
        else:
            continue
        names |= {module.split(".")[1] for module in modules if module.startswith("edgecomp.")}
    return names


def test_every_subpackage_has_a_layer():
    subpackages = {path.name for path in PACKAGE.iterdir() if (path / "__init__.py").exists()}
    modules = {path.stem for path in PACKAGE.glob("*.py") if path.stem != "__init__"}
    assert subpackages | modules <= set(RANK), sorted((subpackages | modules) - set(RANK))


@pytest.mark.parametrize("layer", sorted(RANK), ids=str)
def test_a_layer_imports_nothing_above_it(layer):
    files = sorted((PACKAGE / layer).rglob("*.py")) if (PACKAGE / layer).is_dir() else [PACKAGE / f"{layer}.py"]
    higher = {
        f"{path.relative_to(PACKAGE)} imports edgecomp.{name}"
        for path in files
        for name in imported_subpackages(path)
        if name in RANK and RANK[name] > RANK[layer]
    }
    assert not higher, sorted(higher)


def test_the_import_reader_sees_a_lazy_import_inside_a_function(tmp_path):
    source = tmp_path / "module.py"
    source.write_text("def f():\n    from edgecomp.pipelines.train import train\n    import edgecomp.report.table\n")
    assert imported_subpackages(source) == {"pipelines", "report"}
