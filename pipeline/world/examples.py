"""data/examples/intake_sample.csv: a small synthetic intake export with a few bad rows.

Built by `python -m pipeline.world.examples` (never edited by hand); a test checks the committed
file is what this code writes. Every bad row shows one class of the contract's rejects.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from pipeline.contract.schema import DATA_DIR
from pipeline.intake.frames import to_csv_table
from pipeline.world.generate import generate_frame
from pipeline.world.network import default_model

SAMPLE_PATH = DATA_DIR / "examples" / "intake_sample.csv"
SEED = 2024

# (row index, column, new cell): each breaks or exercises one convention of the contract
EDITS = [
    (2, "bmi", "25 kg"),  # a unit: rejected
    (4, "hours_sitting_per_day", "7,5"),  # a decimal comma: rejected
    (6, "age", "130"),  # above the bound: rejected
    (8, "sex", "unknown"),  # a category not listed: rejected
    (10, "leg_swelling", "maybe"),  # not yes/no: rejected
    (12, "severity", "7.5"),  # not a whole number: rejected
    (14, "crp_mg_l", "inf"),  # not a number: rejected
    (16, "leg_heaviness", " Yes "),  # accepted: case and spaces ignored
    (16, "diabetes", "TRUE"),
    (17, "smoking", "N/A"),  # accepted: unknown
    (17, "statin", "null"),
    (18, "record_id", '=HYPERLINK("http://example.invalid")'),  # scored; neutralised in the output
    (19, "record_id", "clinic A,\nbed 7"),  # quoted, with a comma and a line break
    (20, "record_id", "patiënt-ü-東京"),  # Unicode
]


def sample_text(n: int = 30) -> str:
    model = default_model()
    schema = model.kb.schema
    table = to_csv_table(generate_frame(model, n, SEED), schema).to_pandas()
    rows = [[("" if v is None or v != v else str(v)) for v in row] for row in table.itertuples(index=False)]
    header = list(table.columns)
    for i, column, value in EDITS:
        rows[i][header.index(column)] = value
    rows[22][0] = rows[21][0]  # a repeated record_id: the later row is rejected
    rows[24] = rows[24][:10]  # too few fields: rejected as a row
    rows[26] = rows[26] + ["extra"]  # too many fields: rejected as a row
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def write_sample(path: Path = SAMPLE_PATH) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(sample_text(), encoding="utf-8")
    return path


if __name__ == "__main__":
    print(write_sample())
