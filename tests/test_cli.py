"""The command line a person learns from --help alone: every option described, the input, the two
outputs, the exit codes and the triage levels in the epilog; --version; the program name as
invoked; scores to standard output with the rejects named."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import SCHEMA, base_row, read_rows, write_intake

from pipeline.cli import build_parser, main

VENV_BIN = Path(sys.executable).parent


def help_text(*argv: str) -> str:
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args([*argv, "--help"])
    assert done.value.code == 0
    return ""


def test_score_help_describes_every_option_the_outputs_exit_codes_and_triage(capsys):
    help_text("score")
    text = capsys.readouterr().out
    parser = build_parser()
    score = parser._subparsers._group_actions[0].choices["score"]
    for action in score._actions:
        assert action.help, f"{action.option_strings} has no help"
    for words in (
        "scores",
        "rejects",
        "exit status",
        "130",
        "unusable input",
        *SCHEMA.triage_levels,
        "not a diagnosis",
    ):
        assert words in text, words


def test_version_names_the_package_and_the_contract(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("leg-fatigue-pipeline ") and f"intake schema version {SCHEMA.version}" in out


def test_program_name_is_the_one_invoked():
    script = subprocess.run([str(VENV_BIN / "leg-fatigue"), "score", "--help"], capture_output=True, text=True)
    assert script.returncode == 0 and script.stdout.startswith("usage: leg-fatigue score")
    module = subprocess.run([sys.executable, "-m", "pipeline", "score", "--help"], capture_output=True, text=True)
    assert module.returncode == 0 and module.stdout.startswith("usage: python -m pipeline score")


def test_scores_to_standard_output_need_a_rejects_file(tmp_path, capsys):
    src = write_intake(tmp_path / "in.csv", [base_row("a")])
    assert main(["score", "--input", str(src), "--output", "-"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "--rejects" in err


def test_scores_to_standard_output_and_the_summary_to_stderr(store, tmp_path):
    src = write_intake(tmp_path / "in.csv", [base_row("a"), base_row("b", age="7"), base_row("c")])
    rejects = tmp_path / "rejects.csv"
    run = subprocess.run(
        [sys.executable, "-m", "pipeline", "score", "--input", str(src), "--output", "-", "--rejects", str(rejects)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    rows = list(csv.reader(io.StringIO(run.stdout)))
    assert rows[0] == list(SCHEMA.scores_columns)
    assert [row[0] for row in rows[1:]] == ["a", "c"]
    assert "rows read 3, scored 2, rejected 1" in run.stderr and "not a diagnosis" in run.stderr
    assert [r["record_id"] for r in read_rows(rejects)[1]] == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "rejects.csv"]  # nothing else left


def test_the_spark_engine_writes_directories_and_master_needs_it(tmp_path, capsys):
    forms = write_intake(tmp_path / "in.csv", [base_row("a1")])
    for extra, message in [
        (["--engine", "spark", "--output", "-", "--rejects", str(tmp_path / "r")], "writes directories"),
        (["--engine", "spark", "--output", str(tmp_path / "s")], "writes directories"),
        (["--master", "local[2]", "--output", str(tmp_path / "s.csv")], "--master needs --engine spark"),
    ]:
        assert main(["score", "--input", str(forms), *extra]) == 2
        assert message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]
