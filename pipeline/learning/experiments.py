"""`make experiments`: train every candidate experiment in experiments/ and print the league table."""

from __future__ import annotations

from pipeline.learning.config import EXPERIMENTS_DIR, load_experiment
from pipeline.learning.train import TrainResult, print_result, train


def run_candidates() -> list[tuple[str, TrainResult]]:
    """Train each experiment marked as a candidate, in file-name order."""
    results = []
    for path in sorted(EXPERIMENTS_DIR.glob("*.yaml")):
        config = load_experiment(path)
        if not config.candidate:
            continue
        print(f"\n== {config.name} ({config.family}, {config.calibration}) ==")
        result = train(config)
        print_result(config, result)
        results.append((config.name, result))
    return results


def league_table(results: list[tuple[str, TrainResult]]) -> str:
    """The candidates, best validation log-loss first."""
    lines = ["experiment                      val log-loss  ratio to oracle  max ECE  version  champion"]
    for name, r in sorted(results, key=lambda item: item[1].validation["mean_log_loss"]):
        v = r.validation
        lines.append(
            f"{name:30s}  {v['mean_log_loss']:.5f}       {v['log_loss_ratio_to_oracle']:.4f}"
            f"           {v['max_ece']:.4f}   {r.version:7s}  {'yes' if r.promoted else ''}"
        )
    lines.append("the champion alias moves only on a lower validation log-loss than the current champion's")
    return "\n".join(lines)
