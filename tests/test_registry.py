"""The registry: a model URI resolved to its model and version, and a model made for another
contract refused, whether it comes from the registry or a local directory."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml
from helpers import KB, base_row, probabilities, read_rows, write_intake

from pipeline.cli import main
from pipeline.scoring.score import score_file
from pipeline.tracking.registry import (
    CHAMPION_URI,
    REGISTERED_MODEL,
    ModelMismatchError,
    load_model,
    promotion_decision,
)

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def local_model(store, tmp_path_factory):
    dst = tmp_path_factory.mktemp("champion")
    return Path(mlflow.artifacts.download_artifacts(CHAMPION_URI, dst_path=str(dst)))


def edited_copy(local_model: Path, where: Path, edit) -> Path:
    copy = where / "edited-model"
    shutil.copytree(local_model, copy)
    spec = yaml.safe_load((copy / "MLmodel").read_text())
    edit(spec["metadata"])
    (copy / "MLmodel").write_text(yaml.safe_dump(spec, sort_keys=False))
    return copy


def test_model_for_another_schema_version_is_refused(local_model, tmp_path, capsys):
    copy = edited_copy(local_model, tmp_path, lambda meta: meta.update(schema_version=99))
    with pytest.raises(ModelMismatchError) as err:
        load_model(str(copy), KB.schema)
    message = str(err.value).replace(str(copy), "<model>")
    assert re.search(r"\b99\b", message) and re.search(r"\b1\b", message), message

    src = write_intake(tmp_path / "in.csv", [base_row("a")])
    capsys.readouterr()
    assert main(["score", "--input", str(src), "--output", str(tmp_path / "s.csv"), "--model", str(copy)]) == 2
    err_text = capsys.readouterr().err
    assert len(err_text.splitlines()) == 1 and err_text.startswith("error:") and "99" in err_text
    assert not (tmp_path / "s.csv").exists() and not (tmp_path / "s.rejects.csv").exists()


def test_model_with_another_label_set_is_refused(local_model, tmp_path):
    copy = edited_copy(local_model, tmp_path, lambda meta: meta["outputs"].remove("p_vasculitis"))
    with pytest.raises(ModelMismatchError, match="p_vasculitis"):
        load_model(str(copy), KB.schema)


def test_model_version_is_the_registered_version(store):
    for uri in (CHAMPION_URI, f"models:/{REGISTERED_MODEL}/{store.version}"):
        assert load_model(uri, KB.schema).version == store.version, uri


def test_model_version_of_latest_is_the_registered_version(store):
    assert load_model(f"models:/{REGISTERED_MODEL}/latest", KB.schema).version == store.version


def test_unedited_local_model_directory_scores_like_the_champion(store, local_model, tmp_path):
    loaded = load_model(str(local_model), KB.schema)
    assert loaded.version  # a local directory has no registry version, but the column is never empty
    src = FIXTURES / "score_golden.csv"
    score_file(src, tmp_path / "local.csv", loaded, KB)
    score_file(src, tmp_path / "registry.csv", store.loaded, KB)
    local, registry = read_rows(tmp_path / "local.csv")[1], read_rows(tmp_path / "registry.csv")[1]
    assert [r["record_id"] for r in local] == [r["record_id"] for r in registry] == ["p001", "p002", "p008", "p009"]
    for a, b in zip(local, registry, strict=True):
        np.testing.assert_array_equal(probabilities(a), probabilities(b))
        assert a["model_version"] == loaded.version
    assert (tmp_path / "local.rejects.csv").read_bytes() == (tmp_path / "registry.rejects.csv").read_bytes()


@pytest.mark.parametrize(
    ("mine", "champion", "forced", "promote", "words"),
    [
        (0.070, None, False, True, "no champion yet"),
        (0.070, 0.071, False, True, "<"),
        (0.071, 0.070, False, False, ">="),
        (0.070, 0.070, False, False, ">="),  # a tie keeps the champion
        (0.080, 0.070, True, True, "on request"),
    ],
)
def test_the_champion_moves_only_on_a_lower_log_loss_or_on_request(mine, champion, forced, promote, words):
    decision = promotion_decision(mine, champion, forced)
    assert decision.promote is promote and words in decision.reason
