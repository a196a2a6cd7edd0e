"""Loading the knowledge base: data/knowledge_base.yaml parsed, validated and hashed.

Loading checks every name against the intake schema, every probability against [0, 1],
that every relation cites a known seed passage, that no link is given twice and that no
mapping has a key it does not read (a typo); an error names the offending entry.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

import yaml

from pipeline.contract import _kb_care, _kb_network, _kb_population
from pipeline.contract._kb_reader import TOP_KEYS, Reader
from pipeline.contract.knowledge import KnowledgeBase, KnowledgeBaseError, person_factor_names
from pipeline.contract.schema import DATA_DIR, SAFE_LOADER, Schema, default_schema

KB_PATH = DATA_DIR / "knowledge_base.yaml"
SUPPORTED_SCHEMA_VERSIONS = (1,)


def parse_knowledge_base(text: bytes | str, schema: Schema | None = None) -> KnowledgeBase:
    """Parse and validate knowledge-base YAML text."""
    schema = schema or default_schema()
    data = text.encode() if isinstance(text, str) else text
    raw = yaml.load(data, Loader=SAFE_LOADER)
    if not isinstance(raw, dict):
        raise KnowledgeBaseError("knowledge base: the file is not a YAML mapping")
    r = Reader(raw, schema)
    version = raw.get("schema_version")
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        r.fail("schema_version", f"{version!r} is not supported ({SUPPORTED_SCHEMA_VERSIONS})")
    r.check_keys(raw, TOP_KEYS, "top level")
    _kb_population.read_passages(r)
    bands = _kb_population.read_bands(r)
    populations = _kb_population.read_populations(r, bands)

    factors = person_factor_names(schema, bands)
    risk_factors = _kb_network.read_logistic_nodes(r, "risk_factors", factors, grows=True)
    for pop in populations.values():
        unknown = set(pop.risk_factor_shift) - {n.name for n in risk_factors}
        if unknown:
            r.fail(f"populations.{pop.name}", f"shift of unmodelled risk factors {sorted(unknown)}")
    conditions = _kb_network.read_logistic_nodes(r, "conditions", factors, grows=False)
    _kb_network.check_condition_order(r, conditions)
    cond_set = set(schema.conditions)
    rf_set = {n.name for n in risk_factors}
    findings = _kb_network.read_findings(r, cond_set)
    duration = _kb_network.read_duration(r, cond_set)
    labs = _kb_network.read_labs(r, cond_set, rf_set)
    modelled = (
        rf_set
        | {f.field for f in findings}
        | {lab.name for lab in labs}
        | set(populations["general"].numeric)
        | set(populations["general"].categorical)
        | {"symptom_duration_weeks"}
    )
    unmodelled = [c for c in schema.column_names if c not in modelled]
    if unmodelled:
        r.fail("model", f"intake fields with no generative model: {unmodelled}")
    spec, by_cause = _kb_care.read_specialists(r)
    triage_default = _kb_care.read_triage_default(r)

    return KnowledgeBase(
        schema_version=int(version),
        passages=r.passages,
        bands=bands,
        populations=populations,
        duration=duration,
        risk_factors=risk_factors,
        conditions=conditions,
        findings=findings,
        labs=labs,
        blank_rates=_kb_population.read_blank_rates(r),
        specialist_first=spec["first"],
        specialist_threshold=r.probability(spec, "threshold", "specialists"),
        specialist_by_cause=by_cause,
        red_flags=_kb_care.read_red_flags(r),
        triage_default=triage_default,
        tips=_kb_care.read_tips(r),
        sha256=hashlib.sha256(data).hexdigest(),
        schema=schema,
    )


def load_knowledge_base(path: Path = KB_PATH, schema: Schema | None = None) -> KnowledgeBase:
    """Read, validate and hash the knowledge-base file."""
    return parse_knowledge_base(Path(path).read_bytes(), schema)


@cache
def default_knowledge_base() -> KnowledgeBase:
    """The project's knowledge base, loaded once per process."""
    return load_knowledge_base()
