"""Shared fixtures: the real compiled model and a tiny three-condition one."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from pipeline.contract.loader import load_knowledge_base  # noqa: E402
from pipeline.contract.schema import load_schema  # noqa: E402
from pipeline.world.network import compile_model, default_model  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def model():
    return default_model("general")


@pytest.fixture(scope="session")
def tiny_model():
    schema = load_schema(FIXTURES / "tiny_schema.yaml")
    return compile_model(load_knowledge_base(FIXTURES / "tiny_kb.yaml", schema))


@pytest.fixture(scope="session")
def store(tmp_path_factory):
    """One smoke training into a fresh SQLite store, shared by the test session; its champion loaded.

    The store's URI stays in MLFLOW_TRACKING_URI until the session ends (a module that needs its own
    store, like test_train, sets and restores its own).

    Split data come from the project's content-addressed cache, so only the first run generates them.
    """
    from pipeline.contract.loader import default_knowledge_base
    from pipeline.learning.config import load_experiment
    from pipeline.learning.train import train
    from pipeline.tracking.registry import CHAMPION_URI, load_model

    root = tmp_path_factory.mktemp("mlflow_store")
    patch = pytest.MonkeyPatch()
    patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    patch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    kb = default_knowledge_base()
    result = train(load_experiment("smoke"), experiment="test-store")
    assert result.promoted  # the first model in a fresh store is the champion
    loaded = load_model(CHAMPION_URI, kb.schema)
    yield SimpleNamespace(root=root, version=result.version, loaded=loaded, kb=kb)
    patch.undo()


@pytest.fixture(scope="session")
def quick_model():
    """The `quick` experiment's CauseModel fitted directly (no MLflow) on the cached splits, once per session."""
    from pipeline.contract.loader import default_knowledge_base
    from pipeline.learning.cause_model import targets
    from pipeline.learning.config import load_experiment
    from pipeline.learning.splits import load_split
    from pipeline.learning.train import build_model

    kb = default_knowledge_base()
    config = load_experiment("quick")
    d = config.data
    train, _, _ = load_split(kb, "train", d.population, d.n_train, d.seed)
    cal, _, _ = load_split(kb, "calibration", d.population, d.n_calibration, d.seed)
    return build_model(config, kb).fit(train, targets(train, kb.schema), cal, targets(cal, kb.schema), schema=kb.schema)
