"""Shared fixtures: the real compiled model and a tiny three-condition one."""

from __future__ import annotations

import os
from pathlib import Path

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
