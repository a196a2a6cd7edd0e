"""`score --report PATH.html`: one self-contained page about a scored batch (plots embedded as PNG,
no network): rows and rejects, triage and red flags, causes and conditions, the probabilities'
distribution, drift against the training population, the model and its quality figures.

Numbers a test checks carry `data-key` attributes (e.g. `<td data-key="triage:routine">`).
"""

from __future__ import annotations

import base64
import html
import io
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from pipeline import DISCLAIMER  # noqa: E402
from pipeline.reporting.profile import PROBABILITY_BINS, BatchProfile, population_stability_index  # noqa: E402
from pipeline.tracking.registry import QUALITY_METRICS  # noqa: E402

STYLE = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2rem auto; max-width: 72rem;
       color: #1d2630; line-height: 1.4; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; } h2 { font-size: 1.2rem; margin-top: 2rem;
       border-bottom: 1px solid #d0d7de; padding-bottom: 0.2rem; }
.notice { background: #fff4e5; border: 1px solid #f0b35b; padding: 0.7rem 1rem; border-radius: 6px; }
.cards { display: flex; gap: 1rem; flex-wrap: wrap; } .card { border: 1px solid #d0d7de; border-radius: 6px;
       padding: 0.6rem 1rem; min-width: 9rem; } .card b { display: block; font-size: 1.5rem; }
table { border-collapse: collapse; margin: 0.5rem 0; font-size: 0.9rem; }
th, td { border-bottom: 1px solid #e5e9ee; padding: 0.25rem 0.7rem; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.major { color: #b42318; font-weight: 600; } .moderate { color: #9a6700; }
.emergency { color: #b42318; font-weight: 600; } .urgent { color: #9a6700; font-weight: 600; }
img { max-width: 100%; } .muted { color: #57606a; font-size: 0.85rem; }
"""


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _cell(value, key: str = "", numeric: bool = False, css: str = "") -> str:
    attrs = (f' data-key="{html.escape(key)}"' if key else "") + (' class="n"' if numeric else "")
    attrs += f' class="{css}"' if css and not numeric else ""
    return f"<td{attrs}>{html.escape(str(value))}</td>"


def _table(header: list[str], rows: list[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _share(n: int, total: int) -> str:
    return f"{n / total:.1%}" if total else "-"


def _triage_section(p: BatchProfile) -> str:
    levels = p.kb.schema.triage_levels
    rows = [
        f"<tr>{_cell(level, css=level)}{_cell(p.triage.get(level, 0), f'triage:{level}', True)}"
        f"{_cell(_share(p.triage.get(level, 0), p.rows_scored), numeric=True)}</tr>"
        for level in levels
    ]
    flags = []
    for f in sorted(p.kb.red_flags, key=lambda f: -p.red_flags.get(f.name, 0)):
        n = p.red_flags.get(f.name, 0)
        flags.append(
            f"<tr>{_cell(f.name)}{_cell(f.triage, css=f.triage)}{_cell(n, f'red_flag:{f.name}', True)}"
            f"{_cell(_share(n, p.rows_scored), numeric=True)}</tr>"
        )
    fig, ax = plt.subplots(figsize=(6, 1.9))
    counts = [p.triage.get(level, 0) for level in levels]
    ax.barh(levels[::-1], counts[::-1], color=["#8c959f", "#54aeff", "#d4a72c", "#cf222e"])
    ax.set_xlabel("scored forms")
    return (
        "<h2>Triage and red flags</h2>"
        + _table(["triage", "forms", "share"], rows)
        + f'<img alt="triage mix" src="{_png(fig)}">'
        + "<p class='muted'>A red flag is decided by what the form says; several may fire on one form.</p>"
        + _table(["red flag", "level", "forms", "share"], flags)
    )


def _conditions_section(p: BatchProfile) -> str:
    schema = p.kb.schema
    n = max(p.rows_scored, 1)
    means = p.probability_sum / n
    rows = []
    for j, column in enumerate(schema.probability_columns):
        name = column.removeprefix("p_")
        at_half = int(p.probability_hist[j][PROBABILITY_BINS[:-1] >= 0.5].sum())
        in_top = p.top_conditions.get(name, 0) if not name.startswith("cause_") else "-"
        rows.append(
            f"<tr>{_cell(name)}{_cell(f'{means[j]:.3f}', f'mean:{column}', True)}"
            f"{_cell(_share(at_half, p.rows_scored), numeric=True)}{_cell(in_top, f'top:{name}', True)}</tr>"
        )
    specialists = [
        f"<tr>{_cell(s)}{_cell(p.specialists.get(s, 0), f'specialist:{s}', True)}</tr>" for s in schema.specialists
    ]
    return (
        "<h2>Causes and conditions</h2>"
        + _table(["output", "mean probability", "share at 50% or more", "forms listing it in top conditions"], rows)
        + _table(["specialist", "forms"], specialists)
        + "<h2>Distribution of the probabilities</h2>"
        + f'<img alt="probability histograms" src="{_histograms(p)}">'
    )


def _histograms(p: BatchProfile) -> str:
    columns = p.kb.schema.probability_columns
    cols = 7
    rows = -(-len(columns) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 2.1, rows * 1.6), squeeze=False)
    centres = (PROBABILITY_BINS[:-1] + PROBABILITY_BINS[1:]) / 2
    for j, column in enumerate(columns):
        ax = axes[j // cols][j % cols]
        ax.bar(centres, p.probability_hist[j], width=0.05, color="#cf222e" if "cause_" in column else "#0969da")
        ax.set_yscale("symlog")
        ax.set_title(column.removeprefix("p_"), fontsize=6.5)
        ax.tick_params(labelsize=5)
    for j in range(len(columns), rows * cols):
        axes[j // cols][j % cols].axis("off")
    fig.suptitle("forms per probability bin (log scale); red: causes", fontsize=8)
    fig.tight_layout()
    return _png(fig)


def _drift_section(p: BatchProfile, reference: BatchProfile) -> str:
    rows = []
    for name, counts in p.fields.items():
        mine, ref = counts.shares(), reference.fields[name].shares()
        if not mine:
            continue
        psi = population_stability_index(mine, ref)
        rows.append((psi, name, mine.get("blank", 0.0), ref.get("blank", 0.0)))
    rows.sort(reverse=True)
    body = []
    for psi, name, blank, ref_blank in rows:
        level = "major" if psi >= 0.25 else "moderate" if psi >= 0.1 else ""
        body.append(
            f"<tr>{_cell(name)}{_cell(f'{psi:.3f}', f'psi:{name}', True)}{_cell(level or 'stable', css=level)}"
            f"{_cell(f'{blank:.1%}', f'blank:{name}', True)}{_cell(f'{ref_blank:.1%}', numeric=True)}</tr>"
        )
    return (
        "<h2>Drift against the training population</h2>"
        "<p class='muted'>Per field, the population stability index (PSI) of this batch's answers and blanks "
        "against a sample of the population the model was trained on (numbers in that population's deciles); "
        "0.1-0.25 is a moderate shift, 0.25 or more a major one. Largest first. Probabilities on a shifted "
        "population may be miscalibrated (see make evaluate).</p>"
        + _table(["field", "PSI", "shift", "blank here", "blank in training"], body)
    )


def _rejects_section(p: BatchProfile) -> str:
    rows = [
        f"<tr>{_cell(fld)}{_cell(reason)}{_cell(n, f'reject:{fld}:{reason}', True)}</tr>"
        for (fld, reason), n in p.reject_reasons.most_common()
    ]
    if not rows:
        return "<h2>Rejected rows</h2><p>None: every row was scored.</p>"
    return "<h2>Rejected rows</h2><p class='muted'>Lines of the rejects file, by field and reason.</p>" + _table(
        ["field", "reason", "lines"], rows
    )


def _ask_next_section(p: BatchProfile) -> str:
    """With --explain: the fields most often worth asking next, across the batch."""
    if p.ask_next is None:
        return ""
    rows = [
        "<tr>" + _cell(f) + _cell(p.ask_next_first.get(f, 0), f"ask_first:{f}", True)
        + _cell(n, f"ask_any:{f}", True) + _cell(_share(n, p.rows_scored), numeric=True) + "</tr>"
        for f, n in sorted(p.ask_next.items(), key=lambda kv: (-kv[1], kv[0]))[:15]
    ]  # fmt: skip
    return (
        "<h2 id='ask-next'>What to ask next</h2><p class='muted'>Blank fields suggested by <code>ask_next</code> "
        "(expected information about the conditions under the knowledge base), most often suggested first.</p>"
        + _table(["field", "asked first", "suggested", "share of forms"], rows)
    )


def _model_section(version: str, uri: str, quality: dict[str, float]) -> str:
    rows = [f"<tr>{_cell('model')}{_cell(uri)}</tr>", f"<tr>{_cell('version')}{_cell(version, 'model_version')}</tr>"]
    rows += [
        f"<tr>{_cell(QUALITY_METRICS[k])}{_cell(f'{v:.4f}', f'quality:{k}', True)}</tr>" for k, v in quality.items()
    ]
    if not quality:
        rows.append(f"<tr>{_cell('quality figures')}{_cell('not available from this tracking store')}</tr>")
    return "<h2>Model</h2>" + _table(["", ""], rows)


def render(
    profile: BatchProfile,
    reference: BatchProfile,
    *,
    source: str,
    version: str,
    uri: str,
    quality: dict[str, float],
    seconds: float,
) -> str:
    """The whole page as one string."""
    p = profile
    cards = "".join(
        f"<div class='card'>{label}<b data-key='{key}'>{value:,}</b></div>"
        for label, key, value in (
            ("rows read", "rows_read", p.rows_read),
            ("scored", "rows_scored", p.rows_scored),
            ("rejected", "rows_rejected", p.rows_rejected),
        )
    )
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Leg-fatigue batch report: {html.escape(source)}</title>
<style>{STYLE}</style></head><body>
<h1>Leg-fatigue batch report</h1>
<p class="muted">{html.escape(source)} &middot; scored {when} in {seconds:.1f} s &middot; model version
{html.escape(version)}</p>
<p class="notice"><b>{html.escape(DISCLAIMER)}</b> These probabilities come from a model of a synthetic
population built from one explanatory document; it has never seen a patient. Do not use them to diagnose,
treat or triage a real person without clinical validation.</p>
<div class="cards">{cards}</div>
{_rejects_section(p)}
{_triage_section(p)}
{_conditions_section(p)}
{_ask_next_section(p)}
{_drift_section(p, reference)}
{_model_section(version, uri, quality)}
<p class="notice">{html.escape(DISCLAIMER)}</p>
</body></html>
"""


def write_report(path: Path, page: str) -> None:
    from pipeline.intake.outputs import atomic_paths

    with atomic_paths(Path(path)) as (tmp,):
        Path(tmp).write_text(page, encoding="utf-8")
