"""Sphinx configuration of edgecomp's documentation site.

Build from the repository root (README, "Documentation"):

    pip install -r requirements-docs.txt -c constraints.txt
    python -m sphinx -W --keep-going -b html docs docs/_build/html

Warnings are errors (-W): a broken link, reference or docstring fails the build. Pages are Markdown (MyST); the API
reference is generated from the `edgecomp` package's docstrings and the config-groups page from `conf/`, at every
build, so neither lists a module or an option by hand.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path[:0] = [str(ROOT), str(DOCS / "_ext")]  # the edgecomp package (not installed), and the local extensions

project = "edgecomp"
from edgecomp import __version__ as release  # noqa: E402 (the package is importable only from here on)

version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "config_groups",  # docs/_ext/config_groups.py: reference/config-groups.md from conf/
    "markdown_docstrings",  # docs/_ext/markdown_docstrings.py: the docstrings' Markdown habits read as reST
    "record_reports",  # docs/_ext/record_reports.py: tables rendered from the records committed in docs/records/
]

# .rst first: autosummary writes its generated module pages (reST) with the first suffix.
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
# README.md: GitHub's view of this folder, pointing here; _build: the output.
exclude_patterns = ["_build", "README.md", "records/*/report"]  # the reports are included where used

# Markdown links to headings of other pages (`[x](page.md#a-heading)`) resolve as on GitHub, for # to ###.
myst_heading_anchors = 3

# API reference: every module of the package, found by autosummary's recursion (reference/api.md), each page
# documenting the members the module defines (not those it imports: they have their own page).
autosummary_generate = True
autodoc_default_options = {"members": True, "show-inheritance": True, "ignore-module-all": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
# A method without its own docstring would show its base class's: Lightning's, written for Lightning's own docs
# (roles and labels this site does not have). Show only edgecomp's docstrings.
autodoc_inherit_docstrings = False
# The optional MMDetection extra (requirements-mmdet.txt): no module imports it at import time today, but where it is
# not installed it is mocked, so that the reference never depends on the extra.
autodoc_mock_imports = [name for name in ("mmdet", "mmcv", "mmengine") if importlib.util.find_spec(name) is None]

config_groups_dir = str(ROOT / "conf")

html_theme = "furo"
html_title = f"edgecomp {release}"


def _drop_stale_stubs(app) -> None:
    """Remove generated module pages of modules that no longer exist (renamed or moved), before autosummary
    regenerates the others: an orphaned page would fail the build (not in any toctree)."""
    stubs = DOCS / "reference" / "_autosummary"
    for stub in stubs.glob("*.rst") if stubs.is_dir() else ():  # edgecomp.compress.distillation.hinton_kd.rst: module edgecomp.compress.distillation.hinton_kd
        try:
            found = importlib.util.find_spec(stub.stem) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            stub.unlink()


def setup(app) -> None:
    app.connect("builder-inited", _drop_stale_stubs, priority=400)  # autosummary generates at the default 500
