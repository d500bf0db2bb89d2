"""The package's import structure (issue 15): no import circle, no new import of a higher layer, one
registry that registers once at import and refuses duplicates. The graph is drawn by
``tools/import_graph.py`` (run it to see the report)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from mlfuse.errors import MLFuseError

ROOT = Path(__file__).resolve().parents[1]

#: the imports of a higher layer the design keeps, each with its reason; a new one fails the test
ALLOWED_UPWARD = {
    # FusionModel.fuse / fuse_folder are the user-facing convenience API over the pipeline (function level)
    ("mlfuse.models.base", "mlfuse.inference.fuse"),
}


def _tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "tools" / "import_graph.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["import_graph"] = module  # dataclasses resolve the module by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def graph() -> tuple[ModuleType, dict[str, Path], list]:
    tool = _tool()
    modules, edges = tool.build_graph()
    return tool, modules, edges


def test_no_import_circle(graph: tuple) -> None:
    tool, modules, edges = graph
    assert tool.circles(modules, edges) == []


def test_no_new_upward_import(graph: tuple) -> None:
    tool, _, edges = graph
    new = sorted({(e.src, e.dst) for e in tool.upward(edges)} - ALLOWED_UPWARD)
    assert not new, f"imports of a higher layer (see tools/import_graph.py LAYERS): {new}"


def test_every_module_has_a_layer(graph: tuple) -> None:
    tool, modules, _ = graph
    for name in modules:
        tool.layer_of(name)  # raises KeyError naming the module


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / "mlfuse" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_tool_finds_circles_and_upward_imports(tmp_path: Path) -> None:
    """The checks can fail: a deferred import closing a circle, and a relative import of a higher layer."""
    tool = _tool()
    _write(tmp_path, {
        "__init__.py": "",
        "errors.py": "",
        "data/__init__.py": "",
        "data/io.py": "from mlfuse.errors import X\n\ndef f():\n    from mlfuse.models import registry\n",
        "models/__init__.py": "",
        "models/registry.py": "from ..data import io\nfrom typing import TYPE_CHECKING\n"
                              "if TYPE_CHECKING:\n    from mlfuse.cli import main\n",
        "cli/__init__.py": "",
        "cli/main.py": "import mlfuse.models.registry\n",
    })
    modules, edges = tool.build_graph(tmp_path)
    assert tool.circles(modules, edges) == [["mlfuse.data.io", "mlfuse.models.registry"]]
    up = tool.upward(edges)
    assert [(e.src, e.dst, e.deferred) for e in up] == [("mlfuse.data.io", "mlfuse.models.registry", True)]
    # the TYPE_CHECKING import never runs: no edge
    assert not any(e.dst == "mlfuse.cli.main" for e in edges)
    # module-level chain cli.main -> models.registry -> data.io -> errors (the deferred edge is not a floor)
    assert tool.floors(modules, edges) == 4


def test_release_lookup_does_not_import_the_models() -> None:
    """The release table is complete from the weights layer alone (no lookup imports upward)."""
    code = ("import sys; from mlfuse.weights.store import get_release, list_releases; "
            "names = {r.name for r in list_releases()}; "
            "assert {'mlfuse-own-v1', 'mlfuse-paper', 'cddfuse-ivf', 'emma'} <= names, names; "
            "assert get_release('smfnet-ivf').model == 'smfnet'; "
            "assert 'mlfuse.models' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_duplicate_registration_is_an_error() -> None:
    from mlfuse.models.registry import get_card, register_model
    from mlfuse.weights.store import get_release, register_release

    with pytest.raises(ValueError, match="registered twice"):
        register_model(get_card("mlfuse"))
    with pytest.raises(ValueError, match="declared twice"):
        register_release(get_release("cddfuse-ivf"))


def test_card_fields_are_typed() -> None:
    import mlfuse
    from mlfuse.models.registry import get_recipe, list_recipes
    from mlfuse.models.smfnet.color import paper_color

    assert mlfuse.get_card("cddfuse").tasks == ("ivf", "mif", "mif-ivfckpt")
    assert mlfuse.get_card("smfnet").paper_color is paper_color
    assert mlfuse.get_card("mlfuse").paper_color is None and mlfuse.get_card("max").tasks == ()
    from mlfuse.weights.store import WeightsRelease

    for name in mlfuse.list_models():  # releases are the declared objects, in the card's order
        card = mlfuse.get_card(name)
        assert all(isinstance(r, WeightsRelease) for r in card.releases)
        assert card.release_names == tuple(r.name for r in card.releases)
    assert mlfuse.get_card("mlfuse").release_names == ("mlfuse-own-v1", "mlfuse-own-v2", "mlfuse-paper")
    card = mlfuse.get_card("mlfuse")  # full and short release names, as `mlfuse bench` writes mlfuse:own-v2
    assert card.release_named("own-v2") == card.release_named("mlfuse-own-v2") == "mlfuse-own-v2"
    assert card.release_named("cddfuse-ivf") is None and card.release_named("ivf") is None
    assert mlfuse.get_card("cddfuse").release_names == ("cddfuse-ivf", "cddfuse-mif")
    assert list_recipes() == ["cddfuse", "emma", "mlfuse", "sfdfuse", "smfnet"]
    for name in list_recipes():
        card = mlfuse.get_card(name)
        assert card.recipe is get_recipe(name) and card.recipe.builder is card.builder
    with pytest.raises(MLFuseError, match="no training recipe for 'max'"):
        get_recipe("max")
    # the pipeline reads a model's tiling workers as a declared attribute, not with getattr
    assert mlfuse.create_model("max").workers is None


def test_create_model_refuses_an_unknown_task() -> None:
    import mlfuse

    with pytest.raises(MLFuseError, match=r"^--task vif: not available for model 'cddfuse' \(its tasks are ivf, mif"):
        mlfuse.create_model("cddfuse", weights=None, task="vif")
    with pytest.raises(MLFuseError, match=r"'max' \(it has no task variants"):
        mlfuse.create_model("max", weights=None, task="ivf")
    assert mlfuse.create_model("cddfuse", weights=None, task="mif").card.name == "cddfuse"


def test_import_graph_script_runs() -> None:
    """``python tools/import_graph.py`` (the README's Architecture section) prints the report."""
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "import_graph.py")], check=True, timeout=120,
                         capture_output=True, text=True).stdout
    assert "circles: 0\n" in out and "upward imports: " in out and " floors" in out.splitlines()[0]
