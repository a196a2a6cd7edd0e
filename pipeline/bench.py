"""`make bench`: speed and peak memory of each stage, measured in fresh subprocesses.

Timings vary between runs and machines; compare ratios measured in one run.
"""

from __future__ import annotations

import json
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
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb, **globals().get("extra", {})}))
    """
)


def measure(code: str) -> dict:
    """Run code in a fresh interpreter; wall seconds and peak RSS of that process."""
    out = subprocess.run([sys.executable, "-c", PROBE, code], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def generator(n: int, tmp: Path, fmt: str) -> dict:
    code = f"""
from pipeline.bayesnet import default_model
from pipeline.generate import write_dataset
write_dataset(default_model(), {n}, 1, {str(tmp / f"bench.{fmt}")!r}, {fmt!r})
"""
    result = measure(code)
    return {**result, "rows_per_s": n / result["seconds"]}


def oracle(n: int) -> dict:
    code = f"""
import time
from pipeline.bayesnet import default_model
from pipeline.generate import generate_frame
from pipeline.oracle import posterior_probabilities
model = default_model(); frame = generate_frame(model, {n}, 2)
t = time.perf_counter(); post = posterior_probabilities(model, frame); s = time.perf_counter() - t
extra = {{"oracle_seconds": s, "max_bound": float(post["oracle_error_bound"].max())}}
"""
    result = measure(code)
    return {**result, "rows_per_s": n / result["oracle_seconds"]}


def main() -> None:
    print("Benchmarks (2 cores; figures vary from run to run, compare within one run)")
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in ("parquet", "csv"):
            r = generator(1_000_000, Path(tmp), fmt)
            print(
                f"  generate 1,000,000 rows ({fmt:7s}): {r['seconds']:6.1f} s  "
                f"{r['rows_per_s']:>9,.0f} rows/s  peak {r['peak_mb']:,.0f} MB"
            )
    r = oracle(20_000)
    print(
        f"  oracle      20,000 rows          : {r['oracle_seconds']:6.1f} s  "
        f"{r['rows_per_s']:>9,.0f} rows/s  peak {r['peak_mb']:,.0f} MB  "
        f"largest error bound {r['max_bound']:.1e}"
    )
    for extra in _later_stages():
        extra()


def _later_stages():
    """Benchmarks of stages added by later modules (training, scoring)."""
    return []


if __name__ == "__main__":
    main()
