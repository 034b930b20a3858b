"""Shared test fixtures: paths to the committed sample avatars, and the `slow` marking of tests whose
module fixture is itself slow. Shared helper code lives in ``tests/helpers/``."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"

# Keep torch/numpy from oversubscribing the 2 CI cores when tests spawn subprocesses.
os.environ.setdefault("OMP_NUM_THREADS", "2")

SLOW_FIXTURES = {
    ("test_render_dataset.py", "rendered"),   # a whole `avatex render` run, bad meshes among good ones
    ("test_evaluation.py", "evaluated"),      # evaluating two trained models on every level
    ("test_recon_grid.py", "body"),           # a dense-grid evaluation of the analytic body, two sharpnesses
    ("test_render_lighting.py", "sphere"),    # a sphere rendered under all seven lighting levels
    ("test_render_resume.py", "reference"),   # an uninterrupted reference render to compare against
}
"""(module, fixture) pairs that take more than ~5 s to build: every test using one is ``slow``, so
``scripts/test.sh --fast`` does not pay for the fixture."""


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark ``slow`` every test that uses a slow fixture (``SLOW_FIXTURES``); skip the tests marked
    ``cuda`` where torch sees no GPU, so CPU runs and CI stay green (on a GPU machine they run:
    benchmarks/gpu_check.py runs exactly them)."""
    for item in items:
        module = item.path.name
        if any((module, name) in SLOW_FIXTURES for name in getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    marked = [item for item in items if item.get_closest_marker("cuda") is not None]
    if not marked:
        return
    if importlib.util.find_spec("torch") is not None:
        import torch

        if torch.cuda.is_available():
            return
    skip = pytest.mark.skip(reason="needs CUDA: torch sees no GPU here")
    for item in marked:
        item.add_marker(skip)
