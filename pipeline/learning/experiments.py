"""`make experiments`: train every candidate experiment in experiments/ and print the league table.

Each candidate trains in a fresh interpreter of its own (`python -m pipeline.learning.experiments
<yaml> <result.json>`, as `make train` would run it), so its wall time and peak memory in the table
are its own (a process's peak memory only grows) and one run's caches cannot help or hurt the next.
A plain subprocess rather than a multiprocessing worker: a worker's exit waits for joblib's idle
process pool (five minutes), an interpreter's normal exit shuts it down.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from pipeline.learning.config import EXPERIMENTS_DIR, load_experiment
from pipeline.learning.train import TrainResult, print_result, train


def run_candidates(directory: Path = EXPERIMENTS_DIR) -> tuple[list[tuple[str, TrainResult]], list[str]]:
    """Train each experiment marked as a candidate, in file-name order, each in a fresh process.

    Returns the results and the names of the candidates whose run failed (the others still run).
    """
    results, failed = [], []
    for path in sorted(directory.glob("*.yaml")):
        config = load_experiment(path)
        if not config.candidate:
            continue
        print(f"\n== {config.name} ({config.family}, {config.calibration}) ==", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "result.json"
            run = subprocess.run([sys.executable, "-m", __name__, str(path), str(out)])
            if run.returncode != 0 or not out.exists():
                print(f"{config.name}: training failed (exit status {run.returncode}); see above", flush=True)
                failed.append(config.name)
                continue
            results.append((config.name, TrainResult(**json.loads(out.read_text()))))
    return results, failed


def league_table(results: list[tuple[str, TrainResult]]) -> str:
    """The candidates, best validation log-loss first, with each run's wall time and peak memory."""
    lines = [
        "experiment                      val log-loss  ratio to oracle  max ECE  "
        "wall     peak memory  version  champion"
    ]
    for name, r in sorted(results, key=lambda item: item[1].validation["mean_log_loss"]):
        v = r.validation
        minutes, seconds = divmod(round(r.seconds), 60)
        lines.append(
            f"{name:30s}  {v['mean_log_loss']:.5f}       {v['log_loss_ratio_to_oracle']:.4f}"
            f"           {v['max_ece']:.4f}   {minutes:2d}m {seconds:02d}s  {r.peak_rss_mb / 1024:5.2f} GB     "
            f"{r.version:7s}  {'yes' if r.promoted else ''}"
        )
    lines.append("the champion alias moves only on a lower validation log-loss than the current champion's")
    return "\n".join(lines)


if __name__ == "__main__":  # one candidate, in the interpreter run_candidates started for it
    experiment_path, result_path = map(Path, sys.argv[1:])
    experiment = load_experiment(experiment_path)
    trained = train(experiment)
    print_result(experiment, trained)
    result_path.write_text(json.dumps(asdict(trained)))
