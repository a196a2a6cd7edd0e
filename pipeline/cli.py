"""Command line: `python -m pipeline {generate,oracle,train,evaluate,experiments,score,demo}`.

Argument parsing and dispatch only; each command's work lives in its subsystem. Errors a user
can fix (a bad file, an unknown population) print one line on stderr and exit with status 2;
nothing is left half-written.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from pipeline import DISCLAIMER


class UserError(Exception):
    """A problem the user can fix; reported as one line, exit status 2."""


def _positive_int(text: str) -> int:
    value = int(text.replace("_", ""))
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _compiled_model(population: str):
    from pipeline.contract.loader import default_knowledge_base
    from pipeline.world.network import compile_model

    kb = default_knowledge_base()
    if population not in kb.populations:
        raise UserError(f"unknown population {population!r}; known: {', '.join(kb.populations)}")
    return compile_model(kb, population)


def cmd_generate(args: argparse.Namespace) -> None:
    from pipeline.world.generate import write_dataset

    model = _compiled_model(args.population)
    fmt = args.format or ("csv" if str(args.out).endswith(".csv") else "parquet")
    start = time.perf_counter()
    write_dataset(model, args.n, args.seed, args.out, fmt, progress=sys.stderr.isatty())
    seconds = time.perf_counter() - start
    print(
        f"wrote {args.n:,} synthetic rows to {args.out} ({fmt}, population {args.population}, "
        f"seed {args.seed}, KB {model.kb.short_hash}) in {seconds:.1f} s ({args.n / seconds:,.0f} rows/s)"
    )


def cmd_oracle(args: argparse.Namespace) -> None:
    from pipeline.world.oracle_job import oracle_file

    summary = oracle_file(_compiled_model(args.population), args.input, args.output)
    for w in summary.warnings:
        print(f"warning: {w}", file=sys.stderr)
    rate = summary.rows / max(summary.seconds, 1e-9)
    print(
        f"oracle posterior for {summary.rows:,} rows -> {args.output} ({rate:,.0f} rows/s; "
        f"largest error bound {summary.largest_error_bound:.1e}; population {args.population})"
        + (f"; {summary.rejected_rows:,} rejected rows -> {summary.rejects_path}" if summary.rejected_rows else "")
    )


def cmd_train(args: argparse.Namespace) -> None:
    from pipeline.learning.config import ConfigError, load_experiment
    from pipeline.learning.train import print_result, train

    try:
        config = load_experiment(args.experiment)
    except ConfigError as err:
        raise UserError(str(err)) from None
    print(f"training {config.name} ({config.family}, {config.calibration} calibration). {DISCLAIMER}")
    print_result(config, train(config, promote=args.promote))


def cmd_evaluate(args: argparse.Namespace) -> None:
    from mlflow.exceptions import MlflowException

    from pipeline.learning.evaluate import evaluate, print_evaluation
    from pipeline.tracking.registry import CHAMPION_URI

    uri = args.model or CHAMPION_URI
    try:
        result = evaluate(uri, n=args.n)
    except MlflowException as err:
        raise UserError(f"cannot load {uri}: {str(err).splitlines()[0]} (run `make train` first)") from None
    print_evaluation(result)


def cmd_experiments(args: argparse.Namespace) -> None:
    from pipeline.learning.experiments import league_table, run_candidates

    results, failed = run_candidates()
    if results:
        print("\n" + league_table(results))
    if failed:
        raise UserError(f"{len(failed)} experiment(s) failed: {', '.join(failed)}")


def cmd_score(args: argparse.Namespace) -> None:
    from pipeline.contract.loader import default_knowledge_base
    from pipeline.intake.outputs import default_rejects_path
    from pipeline.scoring.background import arrow_memory_returned_promptly
    from pipeline.scoring.score import score_file
    from pipeline.tracking.persistence import UntrustedModelError
    from pipeline.tracking.registry import CHAMPION_URI, ModelMismatchError, ModelUnavailableError, load_for_scoring

    _check_engine(args)
    if args.input == "-" and sys.stdin.isatty():
        raise UserError("--input - reads standard input: pipe or redirect the intake file into it")
    to_stdout = args.output == "-"
    if to_stdout and not args.rejects:
        raise UserError("--output - writes the scores to standard output: name the rejects file with --rejects")
    report = sys.stderr if to_stdout else sys.stdout
    arrow_memory_returned_promptly()
    kb = default_knowledge_base()
    uri = args.model or CHAMPION_URI
    if Path(uri).exists():
        uri = str(Path(uri).resolve())
    try:  # explanations and Spark (which ships the reviewed model file) need the whole model
        loaded = load_for_scoring(uri, kb.schema, full=args.explain or args.engine == "spark")
    except ModelUnavailableError as err:
        raise UserError(f"cannot load model {uri}: {err} (train one with `make train`)") from None
    except (ModelMismatchError, UntrustedModelError, OSError) as err:
        raise UserError(str(err)) from None
    read_options = {
        "delimiter": {"comma": ",", "semicolon": ";", "tab": "\t"}.get(args.delimiter),
        "decimal_comma": True if args.decimal_comma else None,
        "encoding": args.encoding,
    }
    if args.engine == "spark":
        return _score_on_spark(args, loaded, kb, uri, read_options)
    output = sys.stdout.buffer if to_stdout else Path(args.output)
    explainer = _explainer(loaded.model, kb) if args.explain else None
    observers, profile = (), None
    if args.report:
        from pipeline.reporting.batch import finish_report, start_profile

        profile, reference = start_profile(kb, loaded.run_id)
        observers = (profile.observe,)
    summary = score_file(
        args.input,
        output,
        loaded,
        kb,
        args.rejects,
        read_options={k: v for k, v in read_options.items() if v},
        observers=observers,
        explainer=explainer,
    )
    if profile is not None:
        source = "standard input" if args.input == "-" else str(args.input)
        finish_report(Path(args.report), profile, reference, source=source, loaded=loaded, seconds=summary.seconds)
        print(f"report -> {args.report}", file=report)
    for w in summary.warnings:
        print(f"warning: {w}", file=sys.stderr)
    rejects = args.rejects or default_rejects_path(Path(args.output))
    print(
        f"{summary.line()}; scores -> {args.output}; rejects -> {rejects}; model {uri} (version {loaded.version})",
        file=report,
    )
    print(DISCLAIMER, file=report)


def _explainer(model, kb):
    """`--explain`: the model's exact attributions and the knowledge base's value of information."""
    from pipeline.scoring.explain import Explainer, ExplainError
    from pipeline.world.network import default_model
    from pipeline.world.value_of_information import AskNext

    try:
        return Explainer(model, kb.schema, AskNext(default_model(), kb.schema.explain.ask_next_max))
    except ExplainError as err:
        raise UserError(str(err)) from None


def _score_on_spark(args: argparse.Namespace, loaded, kb, uri: str, read_options: dict) -> None:
    """`score --engine spark`: the same intake path and scoring per file on Spark, into directories."""
    from pipeline.engines.spark import SparkSetupError, score_spark

    if args.explain:
        _explainer(loaded.model, kb)  # here, not on the workers, a model that cannot explain is one line
    options = {"master": args.master, "read_options": {k: v for k, v in read_options.items() if v}}
    options["explainer_factory"] = _explainer if args.explain else None
    try:
        summary = score_spark(args.input, args.output, args.rejects, loaded, kb, **options)
    except SparkSetupError as err:
        raise UserError(str(err)) from None
    for w in summary.warnings:
        print(f"warning: {w}", file=sys.stderr)
    where = f"scores -> {args.output}/; rejects -> {args.rejects}/"
    print(f"{summary.line()}; {where}; model {uri} (version {loaded.version})\n{DISCLAIMER}")


def _check_engine(args: argparse.Namespace) -> None:
    """The options `--engine spark` needs or refuses, before anything is loaded."""
    if args.master and args.engine != "spark":
        raise UserError("--master needs --engine spark")
    if args.engine == "spark" and (args.output == "-" or not args.rejects or args.report):
        raise UserError("--engine spark writes directories: give --output DIR and --rejects DIR (no --report)")


def cmd_demo(args: argparse.Namespace) -> None:
    from pipeline.demo import main as demo

    demo()


SCORE_EPILOG = f"""\
input:
  One intake form per row with a header row, as docs/intake-form.md describes: record_id and age
  are required, every other column may be blank or absent. Header names ignore case, surrounding
  spaces, and spaces or hyphens for underscores. CSV (comma, semicolon or tab), compressed CSV
  (.gz, .bz2, .zst) or Parquet; standard input with --input -.

outputs:
  scores   one row per scored form, in input order: record_id, the 21 p_<condition> and 6
           p_cause_<cause> probabilities, top_conditions, triage, red_flags, specialists,
           model_version; with --explain, reasons and ask_next before model_version:
             reasons   per top condition `condition: +field, +field, -field` (` | ` between
                       conditions): answered fields that raised it most, and the one that
                       lowered it most, exact for the model (calibration is monotone)
             ask_next  up to 3 blank fields, most informative first (expected information
                       gain about the conditions under the knowledge base)
  report   with --report PATH.html, a self-contained page about the batch
  rejects  one line per bad cell or unreadable row: row, record_id, field, value, reason
  Every input row ends up in exactly one of the two. Both are written to temporary files and
  renamed only when the whole input has been read: a failure leaves no partial output.

triage levels:
  emergency   same-day emergency care (a red flag such as a possible pulmonary embolism)
  urgent      assessment within a day or two (e.g. a likely acute DVT, a severe lab value)
  routine     evaluation by a primary care physician (the default for persistent leg fatigue)
  self_care   short, mild soreness after exercise with nothing concerning: the seed's tips

exit status:
  0    done; 2  unusable input or model (one line on stderr, nothing written);
  130  interrupted (nothing written)

{DISCLAIMER}
"""


def _program_name() -> str:
    """The name the user typed: `leg-fatigue` for the installed script, else `python -m pipeline`."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return "python -m pipeline" if name in ("", "__main__.py", "-c") else name


def _version() -> str:
    from importlib import metadata

    from pipeline.contract.schema import default_schema

    try:
        version = metadata.version("leg-fatigue-pipeline")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return f"leg-fatigue-pipeline {version} (intake schema version {default_schema().version})"


class _VersionAction(argparse.Action):
    """`--version`, worked out only when asked for (reading the schema loads numpy and pandas)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest, nargs=0, default=default, help="show the version and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        print(_version())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=_program_name(), description=f"Leg-fatigue risk scoring. {DISCLAIMER}")
    parser.add_argument("--version", action=_VersionAction)
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
    tr.add_argument("--experiment", default="experiments/logistic_joint.yaml", help="YAML path or name")
    tr.add_argument("--promote", action="store_true", help="make it champion whatever its score")
    tr.set_defaults(func=cmd_train)

    ev = sub.add_parser("evaluate", help="score the champion on fresh general and shifted test sets")
    ev.add_argument("--model", default=None, help="model URI (default: the champion)")
    ev.add_argument("--n", type=_positive_int, default=100_000, help="rows per test set")
    ev.set_defaults(func=cmd_evaluate)

    exps = sub.add_parser("experiments", help="train every candidate experiment in experiments/")
    exps.set_defaults(func=cmd_experiments)

    sc = sub.add_parser(
        "score",
        help="score intake forms: a scores file and a rejects file",
        description="Score intake forms (docs/intake-form.md) with the registered model. " + DISCLAIMER,
        epilog=SCORE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sc.add_argument(
        "--input",
        required=True,
        metavar="FILE|-",
        help="intake forms: a CSV (also .gz, .bz2, .zst) or Parquet file, or - for standard input",
    )
    sc.add_argument(
        "--output",
        required=True,
        metavar="FILE|-",
        help="the scores CSV to write, or - for standard output (then --rejects is required)",
    )
    sc.add_argument(
        "--rejects", metavar="FILE", help="the rejects CSV (default: <output stem>.rejects.csv beside the output)"
    )
    sc.add_argument(
        "--model",
        default=None,
        metavar="URI|DIR",
        help="MLflow model URI or local model directory (default: models:/leg-fatigue-causes@champion)",
    )
    sc.add_argument(
        "--delimiter",
        choices=[",", ";", "tab"],
        help="force the delimiter (default: detected from the header among , ; and tab)",
    )
    sc.add_argument(
        "--decimal-comma",
        action="store_true",
        help="accept decimal commas in number cells (always on with ; as delimiter)",
    )
    sc.add_argument(
        "--encoding", metavar="NAME", help="the input's text encoding, e.g. cp1252 or latin-1 (default: UTF-8)"
    )
    sc.add_argument(
        "--explain",
        action="store_true",
        help="add `reasons` (the answered fields that raised and lowered each top condition, exact for the "
        "model) and `ask_next` (up to 3 blank fields worth asking or testing next); slower",
    )
    sc.add_argument(
        "--report",
        metavar="PATH.html",
        help="also write a self-contained page about the batch: rows and rejects, triage and red flags, "
        "causes and conditions, drift against the training population, the model's quality",
    )
    sc.add_argument(
        "--engine",
        choices=["local", "spark"],
        default="local",
        help="local: this process (default); spark: Apache Spark, where --input may be a file, directory or glob "
        "and --output and --rejects are directories of CSV part files (README, 'Scoring on Apache Spark')",
    )
    sc.add_argument(
        "--master", metavar="URL", help="with --engine spark: the Spark master (default local[*]; or SPARK_REMOTE)"
    )
    sc.set_defaults(func=cmd_score)

    demo = sub.add_parser("demo", help="the main job end to end on the embedded defaults")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    args = build_parser().parse_args(argv)
    if args.command == "score":
        # The scorer runs its stages in threads of its own; a matrix product spreading over the same
        # cores only competes with them (read when numpy loads: no effect if it is loaded already).
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from pipeline.contract.knowledge import KnowledgeBaseError
    from pipeline.intake.errors import IntakeFormatError

    try:
        args.func(args)
    except (UserError, IntakeFormatError, KnowledgeBaseError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; no output was written", file=sys.stderr)
        return 130
    return 0
