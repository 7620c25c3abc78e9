"""Layers point one way, checked on every import in the code, inside functions included.

    settings  <- everything (types and the loader only)
    features  -> nothing of ours
    experiments -> nothing of ours (assignment and statistics, shared by campaigns and models)
    privacy   -> settings
    events    -> settings, privacy (the bus: schemas, codec, engines, checkpoints)
    training  -> features, settings, experiments
    serving   -> features, settings (the MLflow registry is not our code)
    crm       -> serving, features, privacy, settings, events, experiments (never training)
    pipelines -> anything; bench -> anything but tests; nothing -> pipelines, bench, tests

Within the application, its parts (crm.channels, crm.conversation, crm.intake, crm.access...)
may import each other but never in a circle.
"""

from __future__ import annotations

import ast
import graphlib
from collections import defaultdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
OURS = (
    "settings", "events", "features", "privacy", "training", "serving", "crm", "pipelines",
    "bench", "experiments",
)  # fmt: skip
ALLOWED: dict[str, set[str]] = {
    "settings": set(),
    "features": set(),
    "experiments": set(),
    "privacy": {"settings"},
    "events": {"settings", "privacy"},
    "training": {"features", "settings", "experiments"},
    "serving": {"features", "settings"},
    "crm": {"serving", "features", "privacy", "settings", "events", "experiments"},
    "pipelines": {
        "settings",
        "events",
        "features",
        "privacy",
        "training",
        "serving",
        "crm",
        "experiments",
    },
    "bench": {
        "settings",
        "events",
        "features",
        "privacy",
        "training",
        "serving",
        "crm",
        "pipelines",
        "experiments",
    },
}


def imports_of(path: Path) -> list[tuple[str, int]]:
    """Every absolute import in a file (module level or inside a function), with its line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno))
            found += [(f"{node.module}.{a.name}", node.lineno) for a in node.names]
    return found


def unit_of(module: str) -> str:
    """The part a module belongs to: its top-level package, or crm's second level."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "crm" and len(parts) > 1 else parts[0]


def is_module(name: str) -> bool:
    """`pkg.mod.Name` imports name a module only when the file or package exists."""
    path = REPO.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def edges(root: Path = REPO) -> list[tuple[str, str, str]]:
    """(importing unit, imported unit, where) for every import of our code by our code."""
    found = []
    for package in OURS:
        for path in sorted((root / package).rglob("*.py")):
            module = ".".join(path.relative_to(root).with_suffix("").parts)
            for name, line in imports_of(path):
                if name.split(".")[0] not in (*OURS, "tests") or not is_module(name):
                    continue
                where = f"{path.relative_to(root)}:{line}"
                found.append((unit_of(module), unit_of(name), where))
    return found


def wrong_way(found: list[tuple[str, str, str]]) -> list[str]:
    problems = []
    for source, target, where in found:
        top_source, top_target = source.split(".")[0], target.split(".")[0]
        if top_source != top_target and top_target not in ALLOWED[top_source]:
            problems.append(f"{where}: {top_source} imports {top_target}")
    return problems


def cycle(found: list[tuple[str, str, str]]) -> list[str] | None:
    graph: dict[str, set[str]] = defaultdict(set)
    for source, target, _ in found:
        if source != target:
            graph[source].add(target)
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as error:
        return list(error.args[1])
    return None


def test_every_import_points_down_the_layers() -> None:
    assert wrong_way(edges()) == []


def test_no_two_parts_import_each_other_even_through_others() -> None:
    assert cycle(edges()) is None


def test_the_check_would_catch_an_upward_import_inside_a_function(tmp_path: Path) -> None:
    features = tmp_path / "features"
    features.mkdir()
    (features / "sneaky.py").write_text("def f():\n    from serving import app\n")
    found = [(unit_of("features.sneaky"), unit_of(name), f"features/sneaky.py:{line}")
             for name, line in imports_of(features / "sneaky.py")]  # fmt: skip
    assert wrong_way(found) == ["features/sneaky.py:2: features imports serving"] * 2


@pytest.mark.parametrize(
    "found",
    [
        [("crm.channels", "crm.intake", "a"), ("crm.intake", "crm.channels", "b")],
        [("crm.a", "crm.b", "1"), ("crm.b", "crm.c", "2"), ("crm.c", "crm.a", "3")],
    ],
)
def test_the_check_would_catch_a_cycle(found) -> None:
    assert cycle(found) is not None
