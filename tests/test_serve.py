"""The served model for real: `make serve` starts `mlflow models serve` on the champion, and real
HTTP requests (JSON split and records, a CSV body, a bad row, no record_id, a missing column) get
the served contract back, parsed with a JSON parser that refuses NaN."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from contextlib import contextmanager

import pandas as pd
import pyarrow.csv as pacsv
import pytest
from helpers import SCHEMA

from pipeline.contract.schema import REPO_ROOT
from pipeline.intake.frames import to_csv_table
from pipeline.world.generate import generate_frame
from pipeline.world.network import default_model

SERVED = [*SCHEMA.scores_columns, "reject_reason"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _no_nan(token: str):
    raise ValueError(f"not strict JSON: {token}")


@contextmanager
def make_server(target: str, port_arg: str, health: str, env: dict):
    """`make TARGET PORT_ARG=port` in its own session, until `health` answers 200; stopped on exit."""
    port = _free_port()
    proc = subprocess.Popen(
        ["make", "--no-print-directory", target, f"{port_arg}={port}"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}{health}", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read() if proc.poll() is not None else ""
                pytest.fail(f"make {target} did not come up (exit {proc.poll()}): {out[-3000:]}")
            time.sleep(0.5)
        yield url, proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def server(store):
    """`make serve` on a free port against the test store's champion; stopped after the module."""
    with make_server("serve", "PORT", "/ping", dict(os.environ)) as (url, _):
        yield url


@pytest.fixture(scope="module")
def forms(tmp_path_factory) -> pd.DataFrame:
    path = tmp_path_factory.mktemp("serve") / "forms.csv"
    pacsv.write_csv(to_csv_table(generate_frame(default_model(), 6, 17), SCHEMA), path)
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def post(url: str, body: bytes, content_type: str) -> tuple[int, dict]:
    request = urllib.request.Request(f"{url}/invocations", data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read(), parse_constant=_no_nan)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read(), parse_constant=_no_nan)


def split_body(frame: pd.DataFrame) -> bytes:
    return json.dumps({"dataframe_split": {"columns": list(frame.columns), "data": frame.values.tolist()}}).encode()


def test_json_split_records_and_csv_bodies_give_the_same_served_rows(server, store, forms):
    expected = store.loaded  # the in-process champion, for the probabilities
    status, split = post(server, split_body(forms), "application/json")
    assert status == 200, split
    rows = split["predictions"]
    assert [list(r) for r in rows] == [SERVED] * len(forms)
    assert [r["record_id"] for r in rows] == list(forms["record_id"])
    assert all(r["reject_reason"] == "" and r["triage"] in SCHEMA.triage_levels for r in rows)
    assert all(r["model_version"] == expected.version for r in rows)

    records = json.dumps({"dataframe_records": forms.to_dict(orient="records")}).encode()
    status, by_records = post(server, records, "application/json")
    assert status == 200 and by_records["predictions"] == rows

    status, by_csv = post(server, forms.to_csv(index=False).encode(), "text/csv")
    assert status == 200, by_csv
    for a, b in zip(by_csv["predictions"], rows, strict=True):
        assert a["record_id"] == b["record_id"] and a["triage"] == b["triage"]
        for column in SCHEMA.probability_columns:
            assert a[column] == pytest.approx(b[column], abs=1e-9), column


def test_explain_is_a_request_parameter(server, forms):
    body = json.loads(split_body(forms))
    status, plain = post(server, json.dumps(body).encode(), "application/json")
    status_explained, explained = post(
        server, json.dumps({**body, "params": {"explain": True}}).encode(), "application/json"
    )
    assert status == status_explained == 200, explained
    assert [list(r) for r in explained["predictions"]] == [
        [*SCHEMA.output_columns(explain=True), "reject_reason"]
    ] * len(forms)
    for a, b in zip(plain["predictions"], explained["predictions"], strict=True):
        assert {c: a[c] for c in SERVED} == {c: b[c] for c in SERVED}
        top = b["top_conditions"].split(SCHEMA.list_separator) if b["top_conditions"] else []
        reasons = b[SCHEMA.explain.columns[0]]
        assert (
            [p.split(": ")[0] for p in reasons.split(SCHEMA.explain.reasons_separator)] == top if top else not reasons
        )


def test_a_bad_row_comes_back_as_null_scores_with_its_reason(server, forms):
    bad = forms.copy()
    bad.loc[2, "age"] = "130"
    status, body = post(server, split_body(bad), "application/json")
    assert status == 200
    rows = body["predictions"]
    assert "age: above the maximum 110" in rows[2]["reject_reason"]
    assert rows[2][SCHEMA.probability_columns[0]] is None and rows[2]["triage"] is None
    assert rows[1]["reject_reason"] == "" and rows[3]["reject_reason"] == ""


def test_record_id_is_optional_over_http(server, forms):
    status, body = post(server, split_body(forms.drop(columns=["record_id"]).head(2)), "application/json")
    assert status == 200 and [r["record_id"] for r in body["predictions"]] == ["row-1", "row-2"]


def test_a_missing_required_column_is_a_clear_400(server, forms):
    status, body = post(server, split_body(forms.drop(columns=["age"])), "application/json")
    assert status == 400 and "missing required column" in body["message"]


def test_make_ui_is_one_light_server(tmp_path):
    """`make ui` serves the UI from one worker: no job runner, no pool of consumers."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'ui.db'}"}
    with make_server("ui", "UI_PORT", "/health", env) as (_, proc):
        time.sleep(2)  # anything it would spawn has spawned
        tree = subprocess.run(["ps", "-o", "pid=,args=", "-g", str(proc.pid)], capture_output=True, text=True).stdout
        python_processes = [line for line in tree.splitlines() if "python" in line]
        assert len(python_processes) <= 2, tree  # mlflow ui and its single uvicorn worker
        assert "huey" not in tree and "_job_runner" not in tree, tree
