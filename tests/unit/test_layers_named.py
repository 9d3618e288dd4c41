"""Every subpackage and module of edgecomp has a layer in pyproject.toml's import-linter contract
(tests/e2e/test_layering.py: the contract kept, and a break caught)."""

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest's own TOML reader
    import tomli as tomllib

from tests.conftest import REPO

PACKAGE = REPO / "edgecomp"


def contract_layers() -> list[str]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c["type"] == "layers"]
    return [name.strip() for layer in contract["layers"] for name in layer.split(":")]


def test_every_subpackage_and_module_has_a_layer():
    subpackages = {path.name for path in PACKAGE.iterdir() if (path / "__init__.py").exists()}
    modules = {path.stem for path in PACKAGE.glob("*.py") if path.stem != "__init__"}
    layered = {name.removeprefix("edgecomp.") for name in contract_layers()}
    assert subpackages | modules <= layered, sorted((subpackages | modules) - layered)
