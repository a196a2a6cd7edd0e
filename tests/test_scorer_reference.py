"""The fast scorer writes byte for byte the files of the scorer it replaced.

The reference is the scorer as it was before it was made fast (commit REFERENCE, read from git at
test time into a temporary directory): both score the same 100,000 generated forms, with bad rows
of every kind mixed in (junk cells, blank and repeated ids, rows with a field too many or too few,
a stray quote, a field over two lines, padded and capitalised spellings), with the same champion;
the new one through the CLI (compact form, threads, whole lines first), the reference as it ran.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
import pytest
from helpers import SCHEMA

from pipeline.contract.schema import REPO_ROOT
from pipeline.intake.frames import to_csv_table
from pipeline.world.generate import generate_frame
from pipeline.world.network import default_model

REFERENCE = "7415b44bb8dfd8ee8aed510a3cd84bcbb31a8f3c"  # the last commit before the fast scorer
CONTRACT = ("data/intake_schema.yaml", "data/knowledge_base.yaml")
ROWS = 100_000


def _git(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, check=False, **kwargs)


@pytest.fixture(scope="module")
def reference_tree(tmp_path_factory) -> Path:
    """The reference commit's `pipeline` and `data`, when git has it and the contract is unchanged."""
    if shutil.which("git") is None or _git("cat-file", "-e", f"{REFERENCE}^{{commit}}").returncode:
        pytest.skip(f"the reference commit {REFERENCE[:12]} is not in this repository")
    for path in CONTRACT:
        if _git("show", f"{REFERENCE}:{path}").stdout != (REPO_ROOT / path).read_bytes():
            pytest.skip(f"{path} changed since {REFERENCE[:12]}: the reference scores another contract")
    root = tmp_path_factory.mktemp("reference")
    archive = root / "reference.tar"
    archive.write_bytes(_git("archive", "--format=tar", REFERENCE, "pipeline", "data").stdout)
    with tarfile.open(archive) as tar:
        tar.extractall(root, filter="data")
    return root


def _corrupted(lines: list[str], rng: np.random.Generator) -> list[str]:
    """About 2% of the data lines made bad (or odd but valid) in one of the ways clinics' files are."""
    header = lines[0].split(",")
    age, sex, swelling = (header.index(f'"{c}"') for c in ("age", "sex", "leg_swelling"))
    out = list(lines)
    for i in rng.choice(np.arange(1, len(lines)), size=len(lines) // 50, replace=False):
        cells = out[i].split(",")
        kind = int(rng.integers(0, 10))
        if kind == 0:
            cells[age] = '"130"'
        elif kind == 1:
            cells[sex] = rng.choice(['"unknown"', '" Male "', '"FEMALE"', '"NA"'])
        elif kind == 2:
            cells[swelling] = rng.choice(['"maybe"', '"Y"', '" yes"', '"2"', '"null"'])
        elif kind == 3:
            cells[0] = out[int(rng.integers(1, i))].split(",")[0] if i > 1 else '""'  # an earlier row's id
        elif kind == 4:
            cells[0] = '""'
        elif kind == 5:
            cells = cells[:-1]  # a field too few
        elif kind == 6:
            cells.append('"extra"')
        elif kind == 7:
            cells[age] = '"4"5'  # a stray quote
        elif kind == 8:
            cells[0] = cells[0][:-1] + '\nsecond line"'  # a quoted id over two lines
        else:
            cells[age] = rng.choice(['"45.0"', '" 45 "', '"45,5"', '"1e2"', '"=1+2"'])
        out[i] = ",".join(cells)
    return out


@pytest.fixture(scope="module")
def intake(tmp_path_factory) -> Path:
    frame = generate_frame(default_model(), ROWS, 20_261_125)
    path = tmp_path_factory.mktemp("forms") / "intake.csv"
    pacsv.write_csv(to_csv_table(frame, SCHEMA), path)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(_corrupted(lines, np.random.default_rng(7))) + "\n")
    return path


def _score(cwd: Path, intake: Path, out: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "score", "--input", str(intake), "--output", str(out)],
        cwd=cwd,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def test_scores_and_rejects_are_byte_for_byte_the_reference_scorers(store, reference_tree, intake, tmp_path):
    summary = _score(REPO_ROOT, intake, tmp_path / "new.csv")
    reference = _score(reference_tree, intake, tmp_path / "reference.csv")
    # the same counts (the timing differs), from files that are the same bytes
    assert summary.split(";")[0] == reference.split(";")[0], (summary, reference)
    assert "rejected 0" not in summary and f"rows read {ROWS:,}" in summary
    for name in ("new.csv", "new.rejects.csv"):
        mine, theirs = tmp_path / name, tmp_path / name.replace("new", "reference")
        assert mine.read_bytes() == theirs.read_bytes(), name
