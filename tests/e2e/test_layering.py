"""The package's layers (pyproject.toml's import-linter contract): a lower one never imports a higher one, checked by
import-linter's command, which reads every import statement, a lazy one inside a function included
(tests/unit/test_layers_named.py: every subpackage and module has a layer)."""

import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "edgecomp"


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """import-linter's command on the package found first under `root` (a fresh process: grimp reads the package
    from sys.path), with the repository's contract."""
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "from importlinter.cli import lint_imports_command; lint_imports_command()",
            "--config",
            str(REPO / "pyproject.toml"),
            "--no-cache",
        ],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_layers_contract_is_kept():
    proc = lint_imports(REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "1 kept, 0 broken" in proc.stdout


def test_the_contract_catches_a_lazy_import_of_a_higher_layer(tmp_path):
    copy = tmp_path / "edgecomp"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    compressor = copy / "compress" / "none.py"
    compressor.write_text(compressor.read_text() + "\n\ndef _run():\n    from edgecomp.pipelines.train import train\n")
    proc = lint_imports(tmp_path)
    assert proc.returncode != 0
    assert "edgecomp.compress.none -> edgecomp.pipelines.train" in proc.stdout


def test_no_module_is_over_450_lines_and_no_two_share_a_file_name():
    """The house's size and naming rules (issue 36): a module a maintainer can read through, named by its role."""
    modules = sorted(PACKAGE.rglob("*.py"))
    long = {str(path.relative_to(PACKAGE)): n for path in modules if (n := len(path.read_text().splitlines())) > 450}
    assert not long, long
    names: dict[str, list[str]] = {}
    for path in modules:
        if path.name != "__init__.py":
            names.setdefault(path.name, []).append(str(path.relative_to(PACKAGE)))
    assert not {name: paths for name, paths in names.items() if len(paths) > 1}
