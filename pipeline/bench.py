"""`make bench`: speed and peak memory of each stage, measured in fresh subprocesses.

Timings vary between runs and machines; compare ratios measured in one run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

PROBE = textwrap.dedent(
    """
    import json, resource, sys, time
    start = time.perf_counter()
    exec(sys.argv[1])
    seconds = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    figures = {"seconds": seconds, "peak_mb": usage.ru_maxrss / 1024, "cpu_seconds": usage.ru_utime + usage.ru_stime}
    print(json.dumps({**figures, **globals().get("extra", {})}))
    """
)


def measure(code: str) -> dict:
    """Run code in a fresh interpreter; wall seconds, peak RSS and CPU seconds (user + system) of that process."""
    out = subprocess.run([sys.executable, "-c", PROBE, code], check=True, capture_output=True, text=True)
    return _with_cores_busy(json.loads(out.stdout.strip().splitlines()[-1]))


def _with_cores_busy(result: dict) -> dict:
    """A run's figures with its CPU over its wall: how many cores it kept busy (of this run alone)."""
    return {**result, "cores_busy": result["cpu_seconds"] / result["seconds"]}


def generator(n: int, tmp: Path, fmt: str) -> dict:
    """Wall from a fresh interpreter (imports and compiling the knowledge base included), and CPU."""
    code = f"""
from pipeline.world.network import default_model
from pipeline.world.generate import write_dataset
model = default_model()
ready = time.perf_counter() - start
write_dataset(model, {n}, 1, {str(tmp / f"bench.{fmt}")!r}, {fmt!r})
extra = {{"startup_seconds": ready}}
"""
    result = measure(code)
    return {**result, "rows_per_s": n / result["seconds"]}


def oracle(n: int) -> dict:
    code = f"""
import time
from pipeline.world.network import default_model
from pipeline.world.generate import generate_frame
from pipeline.world.oracle import posterior_probabilities
model = default_model(); frame = generate_frame(model, {n}, 2)
t = time.perf_counter(); post = posterior_probabilities(model, frame); s = time.perf_counter() - t
extra = {{"oracle_seconds": s, "max_bound": float(post["oracle_error_bound"].max())}}
"""
    result = measure(code)
    return {**result, "rows_per_s": n / result["oracle_seconds"]}


SPARSE_BLANKS = 0.7


def oracle_sparse(n: int) -> dict:
    """The oracle on forms as clinics fill them: most fields blank."""
    code = f"""
import time
import numpy as np
from pipeline.world.network import default_model
from pipeline.world.generate import generate_frame
from pipeline.world.oracle import posterior_probabilities
model = default_model(); frame = generate_frame(model, {n}, 4)
rng = np.random.default_rng(0)
for c in model.kb.schema.column_names:
    if c not in ("record_id", "age"):
        frame.loc[rng.random(len(frame)) < {SPARSE_BLANKS}, c] = None
t = time.perf_counter(); post = posterior_probabilities(model, frame); s = time.perf_counter() - t
extra = {{"oracle_seconds": s}}
"""
    result = measure(code)
    return {**result, "rows_per_s": n / result["oracle_seconds"]}


def explain_cost(n: int, tmp: Path) -> None:
    """`score --explain` against plain scoring on the same generated rows (one run each)."""
    intake = intake_csv(n, tmp / "explain.csv")
    plain = _score(intake, tmp / "plain_scores.csv")
    argv = [sys.executable, "-m", "pipeline", "score", "--input", str(intake), "--output", str(tmp / "ex.csv")]
    explained = measure_command([*argv, "--explain"])
    extra = explained["seconds"] - plain["seconds"]
    print(
        f"  score --explain {n:,} rows: {explained['seconds']:.1f} s vs {plain['seconds']:.1f} s plain; "
        f"the explanations cost {extra:.1f} s = {n / max(extra, 1e-9):,.0f} rows/s  "
        f"peak {explained['peak_mb']:,.0f} MB"
    )


def main() -> None:
    print("Benchmarks (2 cores; figures vary from run to run, compare within one run)")
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in ("parquet", "csv"):
            r = generator(1_000_000, Path(tmp), fmt)
            print(
                f"  generate 1,000,000 rows ({fmt:7s}): {r['seconds']:6.1f} s  "
                f"{r['rows_per_s']:>9,.0f} rows/s  peak {r['peak_mb']:,.0f} MB  "
                f"(start-up {r['startup_seconds']:.1f} s of it; CPU {r['cpu_seconds']:.1f} s)"
            )
    r = oracle(20_000)
    print(
        f"  oracle      20,000 rows          : {r['oracle_seconds']:6.1f} s  "
        f"{r['rows_per_s']:>9,.0f} rows/s  peak {r['peak_mb']:,.0f} MB  "
        f"largest error bound {r['max_bound']:.1e}"
    )
    r = oracle_sparse(2_000)
    print(
        f"  oracle       2,000 sparse forms  : {r['oracle_seconds']:6.1f} s  "
        f"{r['rows_per_s']:>9,.0f} rows/s  peak {r['peak_mb']:,.0f} MB  ({SPARSE_BLANKS:.0%} of fields blank)"
    )
    for extra in _later_stages():
        extra()


CHILD_PROBE = textwrap.dedent(
    """
    import json, resource, subprocess, sys, time
    start = time.perf_counter()
    subprocess.run(json.loads(sys.argv[1]), check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = usage.ru_utime + usage.ru_stime
    print(json.dumps({"seconds": seconds, "peak_mb": usage.ru_maxrss / 1024, "cpu_seconds": cpu}))
    """
)


def measure_command(argv: list[str]) -> dict:
    """Wall time, the peak RSS of a command (its largest process) and its CPU time (user + system)."""
    out = subprocess.run(
        [sys.executable, "-c", CHILD_PROBE, json.dumps(argv)], check=True, capture_output=True, text=True
    )
    return _with_cores_busy(json.loads(out.stdout.strip().splitlines()[-1]))


def intake_csv(n: int, path: Path) -> Path:
    """A synthetic intake CSV (labels dropped), as a clinic would export it."""
    measure(f"""
import pyarrow.csv as c
from pipeline.world.network import default_model
from pipeline.world.generate import write_dataset
write_dataset(default_model(), {n}, 3, {str(path) + ".labelled"!r}, "csv")
t = c.read_csv({str(path) + ".labelled"!r})
c.write_csv(t.drop_columns([x for x in t.column_names if x.startswith("label_")]), {str(path)!r})
""")
    return path


def _score(intake: Path, out: Path) -> dict:
    return measure_command([sys.executable, "-m", "pipeline", "score", "--input", str(intake), "--output", str(out)])


def _median(results: list[dict]) -> dict:
    """Each figure's median over the runs."""
    return {k: sorted(r[k] for r in results)[len(results) // 2] for k in results[0]}


def _alternating(first, second, rounds: int) -> tuple[dict, dict]:
    """Run two measurements in turn `rounds` times (the machine's load changes); the median of each."""
    runs = [(first(), second()) for _ in range(rounds)]
    return _median([a for a, _ in runs]), _median([b for _, b in runs])


def champion_form() -> str:
    """How `score` loads the champion: its compact scoring form, or in full (logged before the form)."""
    from pipeline.contract.schema import default_schema
    from pipeline.scoring.compact import CompactModel
    from pipeline.tracking.registry import CHAMPION_URI, load_for_scoring

    loaded = load_for_scoring(CHAMPION_URI, default_schema())
    form = "with its compact scoring form" if isinstance(loaded.model, CompactModel) else "in full (no compact form)"
    return f"champion version {loaded.version}, scored {form}"


def startup(tmp: Path) -> None:
    """Scoring the 27-row example file against importing what scoring needs at least (3 runs each, in turn)."""
    from pipeline.world.examples import SAMPLE_PATH

    floor, ours = _alternating(
        lambda: measure_command([sys.executable, "-c", "import pandas, pyarrow.csv, sklearn.linear_model"]),
        lambda: _score(SAMPLE_PATH, tmp / "sample_scores.csv"),
        rounds=3,
    )
    print(
        f"  score the 27-row example file       : {ours['seconds']:6.1f} s vs importing pandas, pyarrow.csv and "
        f"sklearn.linear_model {floor['seconds']:.1f} s -> {ours['seconds'] / floor['seconds']:.2f}x "
        f"(medians of 3 runs each, in turn)"
    )


IO_FLOOR = """
import numpy as np, pyarrow as pa, pyarrow.csv as c
t = c.read_csv({intake!r})
n = t.num_rows
cols = {{"record_id": t.column("record_id")}}
cols.update({{f"p{{i}}": pa.array(np.random.default_rng(i).random(n).round(6)) for i in range({k})}})
cols.update({{k: pa.array(np.full(n, "primary_care;vascular_surgeon")) for k in ("a", "b", "c", "d", "e")}})
c.write_csv(pa.table(cols), {out!r})
"""


def io_floor(n: int, small: int, tmp: Path) -> None:
    """Our scorer against an I/O floor on the same CSV (pyarrow reads it and writes a CSV of the scores'
    shape), 2 runs each in turn; then the peak memory at `small` rows against the peak at `n`."""
    from pipeline.contract.schema import default_schema

    intake = intake_csv(n, tmp / "intake.csv")
    code = IO_FLOOR.format(intake=str(intake), k=len(default_schema().probability_columns), out=str(tmp / "floor.csv"))
    floor, ours = _alternating(lambda: measure(code), lambda: _score(intake, tmp / "scores.csv"), rounds=2)
    print(
        f"  score {n:,} rows, ours             : {ours['seconds']:6.1f} s  {n / ours['seconds']:>9,.0f} rows/s  "
        f"peak {ours['peak_mb']:,.0f} MB"
    )
    print(
        f"  I/O floor (read the CSV, write the scores' shape): {floor['seconds']:6.1f} s "
        f"-> ours / floor = {ours['seconds'] / floor['seconds']:.2f}x (medians of 2 runs each, in turn)"
    )
    cores = len(os.sched_getaffinity(0))
    print(
        f"  CPU (user + system): ours {ours['cpu_seconds']:.1f} s, {ours['cores_busy']:.2f} of {cores} cores busy; "
        f"floor {floor['cpu_seconds']:.1f} s, {floor['cores_busy']:.2f} (medians of each run's own ratio)"
    )
    little = _score(intake_csv(small, tmp / "small.csv"), tmp / "small_scores.csv")
    print(
        f"  score peak memory: {little['peak_mb']:,.0f} MB at {small:,} rows, {ours['peak_mb']:,.0f} MB at {n:,} rows "
        f"(ratio {ours['peak_mb'] / little['peak_mb']:.2f})"
    )


def against_mlflow(n: int, tmp: Path) -> None:
    """Our scorer against `mlflow models predict --env-manager local` on the same CSV and champion."""
    from pipeline.tracking.registry import CHAMPION_URI

    intake = intake_csv(n, tmp / "intake.csv")
    ours = _median([_score(intake, tmp / "scores.csv") for _ in range(3)])  # one run moved the ratio by ~15%
    argv = [sys.executable, "-m", "mlflow", "models", "predict", "-m", CHAMPION_URI, "-i", str(intake), "-t", "csv"]
    try:
        theirs = measure_command([*argv, "-o", str(tmp / "mlflow.json"), "--env-manager", "local"])
    except subprocess.CalledProcessError as err:
        print(f"  mlflow models predict failed: {err}")
        return
    print(
        f"  score {n:,} rows: ours {ours['seconds']:.1f} s, peak {ours['peak_mb']:,.0f} MB; mlflow models predict "
        f"{theirs['seconds']:.1f} s, peak {theirs['peak_mb']:,.0f} MB -> ours is "
        f"{theirs['seconds'] / ours['seconds']:.1f}x faster, {theirs['peak_mb'] / ours['peak_mb']:.1f}x less memory "
        "(ours: medians of 3 runs)"
    )


def intake_dir(files: int, rows: int, folder: Path) -> Path:
    """`files` synthetic intake CSVs of `rows` rows each (distinct seeds, so distinct record ids)."""
    folder.mkdir(parents=True, exist_ok=True)
    measure(f"""
import pyarrow.csv as c
from pipeline.world.network import default_model
from pipeline.world.generate import write_dataset
for i in range({files}):
    labelled = {str(folder)!r} + f"/.forms_{{i}}.labelled"
    write_dataset(default_model(), {rows}, 100 + i, labelled, "csv")
    t = c.read_csv(labelled)
    c.write_csv(t.drop_columns([x for x in t.column_names if x.startswith("label_")]),
                {str(folder)!r} + f"/forms_{{i}}.csv")
""")
    for labelled in folder.glob(".*.labelled"):
        labelled.unlink()
    return folder


def spark_scoring(files: int, rows: int, tmp: Path) -> None:
    """The Spark engine (local[*]) against the single-process scorer on the same files."""
    import importlib.util

    if importlib.util.find_spec("pyspark") is None:
        print("  spark benchmark skipped: PySpark is not installed (pip install -e '.[spark]'; make setup does)")
        return
    n = files * rows
    folder = intake_dir(files, rows, tmp / "forms")
    setup = """
from pathlib import Path
from pipeline.contract.loader import default_knowledge_base
from pipeline.tracking.registry import CHAMPION_URI, load_model
from pipeline.tracking.store import configure
configure(); kb = default_knowledge_base()
"""
    single = measure(
        setup
        + f"""
from pipeline.scoring.score import score_file
model = load_model(CHAMPION_URI, kb.schema)
for path in sorted(Path({str(folder)!r}).glob("*.csv")):
    score_file(path, Path({str(tmp)!r}) / ("single_" + path.name), model, kb)
"""
    )
    spark = measure(
        setup
        + f"""
from pipeline.engines.spark import score_spark
model = load_model(CHAMPION_URI, kb.schema)
s = score_spark({str(folder)!r}, Path({str(tmp)!r}) / "scores", Path({str(tmp)!r}) / "rejects", model, kb)
extra = {{"rows_scored": s.rows_scored, "master": s.master, "stages": s.stage_seconds}}
"""
    )
    print(
        f"  score {n:,} rows in {files} files, one process   : {single['seconds']:6.1f} s  "
        f"{n / single['seconds']:>9,.0f} rows/s  peak {single['peak_mb']:,.0f} MB"
    )
    print(
        f"  score {n:,} rows in {files} files, Spark {spark['master']:9s}: {spark['seconds']:6.1f} s  "
        f"{n / spark['seconds']:>9,.0f} rows/s  -> {spark['seconds'] / single['seconds']:.1f}x the time "
        f"({spark['rows_scored']:,} scored)"
    )
    print("  of which " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in spark["stages"].items()))
    print(
        "  reading: on one machine Spark pays for starting a JVM, for Python workers that each import\n"
        "  the package (in the id pass, the first to run), for that pass over the record ids (a repeat\n"
        "  across files) and for the Arrow hand-offs; its workers share this machine's cores with each\n"
        "  other and the driver. The point is that the same code scales out: with --master on a\n"
        "  cluster, the files score in parallel on every executor."
    )


def _later_stages():
    """Benchmarks that need a champion in the tracking store."""

    def run_scoring():
        from pipeline.tracking.registry import champion_version
        from pipeline.tracking.store import configure

        configure()
        if champion_version() is None:
            print("  scoring benchmarks skipped: no champion yet (run `make train` first)")
            return
        print(f"  {champion_form()}")
        for stage, args in ((startup, ()), (against_mlflow, (200_000,)), (io_floor, (1_000_000, 100_000))):
            with tempfile.TemporaryDirectory() as tmp:
                stage(*args, Path(tmp))
        with tempfile.TemporaryDirectory() as tmp:
            spark_scoring(8, 125_000, Path(tmp))

    def run_explain():
        from pipeline.tracking.registry import champion_version

        if champion_version() is not None:
            with tempfile.TemporaryDirectory() as tmp:
                explain_cost(2_000, Path(tmp))

    return [run_scoring, run_explain]


if __name__ == "__main__":
    main()
