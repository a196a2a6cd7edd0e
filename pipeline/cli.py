"""Command line: `python -m pipeline {generate,oracle,...}`.

Errors a user can fix (a bad file, an unknown population) print one line on stderr and
exit with status 2; nothing is left half-written.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from pipeline.knowledge import KnowledgeBaseError

DISCLAIMER = "Decision support on synthetic data, not a diagnosis."


class UserError(Exception):
    """A problem the user can fix; reported as one line, exit status 2."""


def _positive_int(text: str) -> int:
    value = int(text.replace("_", ""))
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def cmd_generate(args: argparse.Namespace) -> None:
    from pipeline.bayesnet import compile_model
    from pipeline.generate import write_dataset
    from pipeline.knowledge import default_knowledge_base

    kb = default_knowledge_base()
    if args.population not in kb.populations:
        raise UserError(f"unknown population {args.population!r}; known: {', '.join(kb.populations)}")
    fmt = args.format or ("csv" if str(args.out).endswith(".csv") else "parquet")
    model = compile_model(kb, args.population)
    start = time.perf_counter()
    write_dataset(model, args.n, args.seed, args.out, fmt, progress=sys.stderr.isatty())
    seconds = time.perf_counter() - start
    print(
        f"wrote {args.n:,} synthetic rows to {args.out} ({fmt}, population {args.population}, "
        f"seed {args.seed}, KB {kb.short_hash}) in {seconds:.1f} s ({args.n / seconds:,.0f} rows/s)"
    )


def read_typed_input(path: Path):
    """A Parquet data set or an intake CSV as (typed frame, rejects, warnings)."""
    from pipeline.dataset import read_parquet_dataset
    from pipeline.reader import iter_raw_chunks, read_header
    from pipeline.schema import default_schema
    from pipeline.validate import SeenIds, header_warnings, validate_table

    schema = default_schema()
    if str(path).endswith(".parquet"):
        if not Path(path).exists():
            raise UserError(f"{path}: no such file")
        return read_parquet_dataset(path, schema), pd.DataFrame(columns=list(schema.rejects_columns)), []
    header = read_header(path)
    warnings = header_warnings(header, schema)
    first_seen = SeenIds()
    typed, rejects = [], []
    for chunk in iter_raw_chunks(path, header):
        result = validate_table(chunk.table, chunk.rows, schema, first_seen)
        typed.append(result.typed)
        rejects.extend([chunk.malformed, result.rejects])
    rejects = [r for r in rejects if len(r)]
    all_rejects = (
        pd.concat(rejects, ignore_index=True).sort_values("row", kind="stable")
        if rejects
        else pd.DataFrame(columns=list(schema.rejects_columns))
    )
    return pd.concat(typed), all_rejects, warnings


def write_csv_frame(frame: pd.DataFrame, path: Path) -> None:
    """Write a frame with pyarrow's CSV writer (much faster than pandas for floats)."""
    pacsv.write_csv(pa.Table.from_pandas(frame, preserve_index=False), path)


def cmd_oracle(args: argparse.Namespace) -> None:
    from pipeline.bayesnet import compile_model
    from pipeline.knowledge import default_knowledge_base
    from pipeline.oracle import ERROR_COLUMN, posterior_probabilities
    from pipeline.outputs import atomic_paths, neutralize_formulas

    kb = default_knowledge_base()
    if args.population not in kb.populations:
        raise UserError(f"unknown population {args.population!r}; known: {', '.join(kb.populations)}")
    typed, rejects, warnings = read_typed_input(args.input)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    start = time.perf_counter()
    post = posterior_probabilities(compile_model(kb, args.population), typed)
    seconds = time.perf_counter() - start
    schema = kb.schema
    out = pd.DataFrame({schema.id_column: typed[schema.id_column].to_numpy()})
    out[schema.id_column] = neutralize_formulas(out[schema.id_column], schema).to_pylist()
    for col in post.columns:
        out[col] = post[col].to_numpy()
    rejects_path = Path(args.output).with_name(Path(args.output).stem + ".rejects.csv")
    targets = [Path(args.output)] + ([rejects_path] if len(rejects) else [])
    with atomic_paths(*targets) as temps:
        write_csv_frame(out, temps[0])
        if len(rejects):
            rej = rejects.copy()
            for col in ("record_id", "value"):
                rej[col] = neutralize_formulas(rej[col].astype(str), schema).to_pylist()
            write_csv_frame(rej, temps[1])
    worst = float(np.max(post[ERROR_COLUMN])) if len(post) else 0.0
    rate = len(out) / max(seconds, 1e-9)
    print(
        f"oracle posterior for {len(out):,} rows -> {args.output} ({rate:,.0f} rows/s; "
        f"largest error bound {worst:.1e}; population {args.population})"
        + (f"; {rejects['row'].nunique():,} rejected rows -> {rejects_path}" if len(rejects) else "")
    )


def cmd_train(args: argparse.Namespace) -> None:
    from pipeline.config import ConfigError, load_experiment
    from pipeline.train import print_result, train

    try:
        config = load_experiment(args.experiment)
    except ConfigError as err:
        raise UserError(str(err)) from None
    print(f"training {config.name} ({config.family}, {config.calibration} calibration). {DISCLAIMER}")
    print_result(config, train(config, promote=args.promote))


def cmd_evaluate(args: argparse.Namespace) -> None:
    from mlflow.exceptions import MlflowException

    from pipeline.evaluate import evaluate, print_evaluation
    from pipeline.tracking import CHAMPION_URI

    uri = args.model or CHAMPION_URI
    try:
        result = evaluate(uri, n=args.n)
    except MlflowException as err:
        raise UserError(f"cannot load {uri}: {str(err).splitlines()[0]} (run `make train` first)") from None
    print_evaluation(result)


def cmd_experiments(args: argparse.Namespace) -> None:
    from pipeline.config import EXPERIMENTS_DIR, load_experiment
    from pipeline.train import print_result, train

    results = []
    for path in sorted(EXPERIMENTS_DIR.glob("*.yaml")):
        config = load_experiment(path)
        if not config.candidate:
            continue
        print(f"\n== {config.name} ({config.family}, {config.calibration}) ==")
        result = train(config)
        print_result(config, result)
        results.append((config.name, result))
    print("\nexperiment                      val log-loss  ratio to oracle  max ECE  version  champion")
    for name, r in sorted(results, key=lambda item: item[1].validation["mean_log_loss"]):
        v = r.validation
        print(
            f"{name:30s}  {v['mean_log_loss']:.5f}       {v['log_loss_ratio_to_oracle']:.4f}"
            f"           {v['max_ece']:.4f}   {r.version:7s}  {'yes' if r.promoted else ''}"
        )
    print("the champion alias moves only on a lower validation log-loss than the current champion's")


def cmd_score(args: argparse.Namespace) -> None:
    from mlflow.exceptions import MlflowException

    from pipeline.knowledge import default_knowledge_base
    from pipeline.persistence import UntrustedModelError
    from pipeline.score import ModelMismatchError, default_rejects_path, load_scoring_model, score_file
    from pipeline.tracking import CHAMPION_URI, configure

    kb = default_knowledge_base()
    uri = args.model or CHAMPION_URI
    if Path(uri).exists():
        uri = str(Path(uri).resolve())
    configure()
    try:
        loaded = load_scoring_model(uri, kb)
    except MlflowException as err:
        raise UserError(f"cannot load model {uri}: {str(err).splitlines()[0]} (train one with `make train`)") from None
    except (ModelMismatchError, UntrustedModelError, OSError) as err:
        raise UserError(str(err)) from None
    summary = score_file(args.input, args.output, loaded, kb, args.rejects)
    for w in summary.warnings:
        print(f"warning: {w}", file=sys.stderr)
    rejects = args.rejects or default_rejects_path(args.output)
    print(f"{summary.line()}; scores -> {args.output}; rejects -> {rejects}; model {uri} (version {loaded.version})")
    print(DISCLAIMER)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline",
        description=f"Leg-fatigue risk scoring. {DISCLAIMER}",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="sample synthetic intake records with their true conditions")
    gen.add_argument("--n", type=_positive_int, required=True, help="number of rows")
    gen.add_argument("--seed", type=int, required=True)
    gen.add_argument("--out", type=Path, required=True)
    gen.add_argument("--format", choices=["parquet", "csv"], help="default: from the file name")
    gen.add_argument("--population", default="general", help="population preset of the knowledge base")
    gen.set_defaults(func=cmd_generate)

    orc = sub.add_parser("oracle", help="exact posterior of the generator's model for each row")
    orc.add_argument("--input", type=Path, required=True, help="intake CSV or generated Parquet")
    orc.add_argument("--output", type=Path, required=True, help="CSV of p_ columns per row")
    orc.add_argument("--population", default="general")
    orc.set_defaults(func=cmd_oracle)
    tr = sub.add_parser("train", help="train an experiment, log it to MLflow, register it")
    tr.add_argument("--experiment", default="experiments/logistic_interactions.yaml", help="YAML path or name")
    tr.add_argument("--promote", action="store_true", help="make it champion whatever its score")
    tr.set_defaults(func=cmd_train)

    ev = sub.add_parser("evaluate", help="score the champion on fresh general and shifted test sets")
    ev.add_argument("--model", default=None, help="model URI (default: the champion)")
    ev.add_argument("--n", type=_positive_int, default=100_000, help="rows per test set")
    ev.set_defaults(func=cmd_evaluate)

    exps = sub.add_parser("experiments", help="train every candidate experiment in experiments/")
    exps.set_defaults(func=cmd_experiments)

    sc = sub.add_parser("score", help="score an intake CSV: a scores file and a rejects file")
    sc.add_argument("--input", type=Path, required=True)
    sc.add_argument("--output", type=Path, required=True)
    sc.add_argument("--rejects", type=Path, help="default: <output stem>.rejects.csv beside the output")
    sc.add_argument("--model", default=None, help="MLflow model URI or local model directory (default: champion)")
    sc.set_defaults(func=cmd_score)

    demo = sub.add_parser("demo", help="the main job end to end on the embedded defaults")
    demo.set_defaults(func=lambda args: __import__("pipeline.demo", fromlist=["main"]).main())
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from pipeline.validate import IntakeFormatError

    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (UserError, IntakeFormatError, KnowledgeBaseError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; no output was written", file=sys.stderr)
        return 130
    return 0
