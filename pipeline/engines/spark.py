"""`score --engine spark`: the single-machine intake path and `score_chunk`, one Spark task per file.

docs/intake-form.md, "Scoring at cluster scale". Pass 1 reads each file's record_id column
(`file_tasks.file_id_uses`) and Spark groups the ids to find those used in several files; pass 2
scores every file (`file_tasks.score_one_file`) with the ids earlier files used already known,
so the rows, rejects, probabilities and reasons equal the single-machine scorer's, file by file.
Both passes go through `mapInArrow`. The model travels as reviewed skops bytes inside the task
(Spark broadcasts a large task once per executor) and is loaded once per worker process. Tasks
write part files into hidden directories beside the targets, renamed into place only when the
whole job has succeeded. The input files and the output directories must be at the same paths on
the driver and every executor (one machine, or a shared filesystem).

PySpark is imported inside the functions: the rest of the package works without it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

import pipeline
from pipeline.contract.knowledge import KnowledgeBase
from pipeline.contract.schema import Schema
from pipeline.engines.file_tasks import (
    ID_USES_SCHEMA,
    RESULT_SCHEMA,
    ScoringJob,
    earlier_uses,
    file_id_uses,
    part_name,
    score_one_file,
)
from pipeline.engines.files import check_output_dirs, input_files, replaced_dirs
from pipeline.intake.errors import IntakeFormatError
from pipeline.intake.reader import BLOCK_BYTES
from pipeline.intake.stream import iter_validated
from pipeline.scoring.score import ScoreSummary, ScoringModel, sigterm_as_interrupt
from pipeline.scoring.served import REJECT_REASON
from pipeline.tracking.persistence import model_bytes

DEFAULT_MASTER = "local[*]"
APP_NAME = "leg-fatigue-score"
LOG4J_QUIET = Path(__file__).with_name("log4j2-quiet.properties")
MAX_ID_PARTITIONS = 200
PANDAS_3_WARNING = "PySpark does not yet fully support pandas"


@dataclass
class SparkScoreSummary(ScoreSummary):
    """The single-machine summary (rows read, scored, rejected, seconds, warnings) and where it ran."""

    files: int = 0
    master: str = ""
    model_version: str = ""
    stage_seconds: dict[str, float] = field(default_factory=dict)  # session start, id pass, scoring pass

    def line(self) -> str:
        return f"{super().line()}; {self.files:,} file(s) on Spark {self.master}"


def served_result_type(schema: Schema, explain: bool = False) -> str:
    """The `result_type` for `mlflow.pyfunc.spark_udf` on the registered model: the served columns
    as a struct (probabilities double, null for a rejected row; the rest strings); with `explain`,
    those of `params={"explain": True}`."""
    probabilities = set(schema.probability_columns)
    names = [*schema.output_columns(explain), REJECT_REASON]
    return ", ".join(f"{c} {'double' if c in probabilities else 'string'}" for c in names)


def score_spark(
    input_spec: str,
    output_dir: Path | str,
    rejects_dir: Path | str,
    model: ScoringModel,
    kb: KnowledgeBase,
    *,
    master: str | None = None,
    read_options: dict | None = None,
    block_bytes: int = BLOCK_BYTES,
    explainer_factory: Callable | None = None,
) -> SparkScoreSummary:
    """Score the files `input_spec` names (a file, directory or glob) on Spark into directories of
    CSV part files (`part-NNNNN.csv`, one per input file in name order, each with a header): the
    scores, and the rejects with a leading `file` column.

    `model` is a loaded model (`tracking.registry.load_model`); it is shipped to the workers as
    reviewed skops bytes. `master`: a Spark master URL (`local[*]` by default, `spark://...`,
    `yarn`, `sc://...` for Spark Connect); with None, an active session or `SPARK_REMOTE` is used
    first. `read_options` go to the intake path as in `score_file`. `explainer_factory`: a
    function (model, kb) -> explainer for `score_chunk`, importable on the workers (the CLI's
    `--explain` passes its own), called once per file; the scores then have its columns.

    Raises IntakeFormatError for input that cannot be read as intake forms (no files, a missing
    required column, an undecodable file, output directories that would overwrite something
    else); SparkSetupError when Spark cannot start (no PySpark, no Java, two clusters named);
    Spark's own exceptions for a job that fails otherwise; KeyboardInterrupt on Ctrl-C or SIGTERM.
    On any failure nothing is written and earlier output directories are left as they were.
    """
    start = time.perf_counter()
    schema, read_options = kb.schema, dict(read_options or {})
    files = input_files(str(input_spec))
    output_dir, rejects_dir = Path(output_dir), Path(rejects_dir)
    check_output_dirs([output_dir, rejects_dir], files)
    header_warnings = []
    for path in files:  # fail fast on a file no form can be read from, before Spark starts
        stream = iter_validated(path, schema, block_bytes=block_bytes, **read_options)
        stream.close()
        header_warnings += [f"{path}: {w}" for w in stream.warnings]
    shipped = model_bytes(model.model)
    stages = {"session": -time.perf_counter()}
    spark, started, where = spark_session(master)
    stages["session"] += time.perf_counter()
    try:
        with (
            sigterm_as_interrupt(),
            _quiet_pandas_warning(),
            replaced_dirs(output_dir, rejects_dir) as (scores_tmp, rejects_tmp),
        ):
            job = ScoringJob(
                files=tuple(str(p.resolve()) for p in files),
                names=tuple(str(p) for p in files),
                kb=kb,
                model=shipped,
                model_version=model.version,
                model_digest=hashlib.sha256(shipped).hexdigest(),
                scores_dir=str(scores_tmp.resolve()),
                rejects_dir=str(rejects_tmp.resolve()),
                read_options=read_options,
                block_bytes=block_bytes,
                explainer_factory=explainer_factory,
            )
            results = _run_job(spark, job, files, stages)
    finally:
        if started:
            spark.stop()
    return SparkScoreSummary(
        rows_read=sum(r["rows_read"] for r in results),
        rows_scored=sum(r["rows_scored"] for r in results),
        rows_rejected=sum(r["rows_rejected"] for r in results),
        seconds=time.perf_counter() - start,
        warnings=header_warnings,
        files=len(files),
        master=where,
        model_version=model.version,
        stage_seconds=stages,
    )


class SparkSetupError(ValueError):
    """Spark cannot start as asked (PySpark or Java missing, two clusters named): one line, exit 2."""


def spark_session(master: str | None = None):
    """(session, whether this call started it, where it runs). `master` None: the active session,
    else Spark Connect at SPARK_REMOTE, else `local[*]`; an `sc://` master is Spark Connect. A
    local master's Python workers run this interpreter and import this package."""
    try:
        from pyspark.errors import PySparkRuntimeError
        from pyspark.sql import SparkSession
    except ImportError:
        raise SparkSetupError("PySpark is not installed: pip install -e '.[spark]' (make setup does)") from None

    remote = os.environ.get("SPARK_REMOTE")
    if master is None and (active := SparkSession.getActiveSession()) is not None:
        return active, False, _where(active)
    if master and remote and not master.startswith("sc://"):
        raise SparkSetupError(f"--master {master} and SPARK_REMOTE={remote} name two clusters: unset one")
    url = master or remote or DEFAULT_MASTER
    connect = url.startswith("sc://") or (master is None and bool(remote))  # a `local` one runs in this process
    builder = SparkSession.builder.appName(APP_NAME)
    builder = builder.remote(url) if connect else builder.master(url)
    if url.startswith("local"):
        _local_workers_run_this_python()
    if not connect:  # a Connect server's configuration is the server's
        builder = builder.config("spark.ui.showConsoleProgress", "false")
        if url.startswith("local"):
            builder = builder.config("spark.ui.enabled", "false")
            builder = builder.config(
                "spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile={LOG4J_QUIET.as_uri()}"
            )
        else:
            builder = builder.config("spark.log.level", "ERROR")
    try:
        with _quiet_pandas_warning():
            return builder.getOrCreate(), True, url
    except ImportError as err:  # Spark Connect's client needs grpcio and friends
        first = str(err).splitlines()[0]
        raise SparkSetupError(f"Spark Connect needs pip install 'pyspark[connect]' ({first})") from None
    except PySparkRuntimeError as err:
        if "JAVA_GATEWAY_EXITED" in str(err):
            raise SparkSetupError("Spark could not start its JVM: it needs Java 17 or newer (java -version)") from None
        raise


def _where(session) -> str:
    return session.conf.get("spark.master", None) or os.environ.get("SPARK_REMOTE", "Spark Connect")


def _local_workers_run_this_python() -> None:
    os.environ["PYSPARK_PYTHON"] = sys.executable
    root = str(Path(pipeline.__file__).resolve().parent.parent)
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([root, *paths])


@contextmanager
def _quiet_pandas_warning() -> Iterator[None]:
    """PySpark warns that pandas >= 3 is not fully supported; the Arrow path used here does not
    depend on it (docs: ../shared/PITFALLS.md). Only that warning is silenced."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=PANDAS_3_WARNING, category=FutureWarning)
        yield


def _run_job(spark, job: ScoringJob, files: list[Path], stages: dict[str, float]) -> list[dict]:
    """Both passes (their seconds into `stages`); on any failure (Ctrl-C too) the job's Spark work
    is stopped before the temporary directories go, so no straggling task writes into them."""
    try:
        order = _largest_first(files)
        start = time.perf_counter()
        if len(files) > 1:
            job = replace(job, earlier=_earlier_uses(spark, job, order))
        stages["id pass"] = time.perf_counter() - start
        results = _score_files(spark, job, order)
        stages["scoring pass"] = time.perf_counter() - start - stages["id pass"]
        _check_parts(job, Path(job.scores_dir), Path(job.rejects_dir))
        return results
    except BaseException:
        _cancel(spark)
        raise


def _largest_first(files: list[Path]) -> list[int]:
    """File indices, largest file first: Spark starts tasks in partition order, so the longest
    tasks start first and the last ones to finish are short."""
    return sorted(range(len(files)), key=lambda i: -files[i].stat().st_size)


def _per_file(task, job: ScoringJob, order: list[int], batches: Iterator[pa.RecordBatch]):
    """A mapInArrow function: for each partition number in the input, the task on its file."""
    for batch in batches:
        for partition in batch.column(0).to_pylist():
            yield from task(job, order[partition])


def _tasks(spark, job: ScoringJob, order: list[int], task, schema: pa.Schema):
    from pyspark.sql.pandas.types import from_arrow_schema

    function = functools.partial(_per_file, task, job, order)
    return spark.range(len(order), numPartitions=len(order)).mapInArrow(function, from_arrow_schema(schema))


def _earlier_uses(spark, job: ScoringJob, order: list[int]):
    """Pass 1: the ids each file uses; those in several files grouped by id on Spark, then collected."""
    from pyspark.sql import functions as F

    uses = _tasks(spark, job, order, file_id_uses, ID_USES_SCHEMA)
    partitions = min(max(len(order), 1), MAX_ID_PARTITIONS)  # not 200 shuffle partitions for a few files
    grouped = (
        uses.repartition(partitions, "record_id")
        .groupBy("record_id")
        .agg(
            F.sort_array(F.collect_list(F.struct("file", "row"))).alias("uses"),
            F.collect_list("error").alias("errors"),
        )
    )
    repeated = grouped.where((F.size("uses") > 1) | F.col("record_id").isNull()).toArrow()
    failed = repeated.filter(pc.is_null(repeated.column("record_id")))
    errors = [e for row in failed.column("errors").to_pylist() for e in row]
    if errors:
        raise IntakeFormatError(sorted(errors)[0])
    return earlier_uses(repeated.drop_columns(["errors"]))


def _score_files(spark, job: ScoringJob, order: list[int]) -> list[dict]:
    """Pass 2: every file scored into its part files; one result line per file."""
    results = _tasks(spark, job, order, score_one_file, RESULT_SCHEMA).toArrow().to_pylist()
    errors = sorted((r["file"], r["error"]) for r in results if r["error"])
    if errors:
        raise IntakeFormatError(errors[0][1])
    return results


def _check_parts(job: ScoringJob, *dirs: Path) -> None:
    """Every input file has its two part files (a task that vanished would otherwise lose rows)."""
    for folder in dirs:
        missing = [f for i, f in enumerate(job.names) if not (Path(folder) / part_name(i, len(job.files))).is_file()]
        if missing:
            raise RuntimeError(f"Spark finished without the part files of {', '.join(missing[:3])}")


def _cancel(spark) -> None:
    """Stop whatever the job still runs (a Ctrl-C or a failed task); best effort while failing."""
    from pyspark.errors import PySparkException

    errors: tuple[type[Exception], ...] = (PySparkException,)
    with contextlib.suppress(ImportError):  # py4j: classic Spark only
        from py4j.protocol import Py4JError

        errors += (Py4JError,)
    with contextlib.suppress(*errors):
        spark.interruptAll()
