"""Versions of the code that makes data: a cached data set or oracle posterior is reused only
when the knowledge base, the seed AND the code that made it are the same (a change to the
generator or the oracle makes new files, never reads stale ones)."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent
# What the generator's output depends on: the loader (how the KB is read), the compiled network,
# the sampler and the typed/CSV/Parquet forms it writes.
GENERATOR_SOURCES = (
    "contract/*.py",
    "world/network.py",
    "world/special.py",
    "world/sampling.py",
    "world/generate.py",
    "world/csv_text.py",
    "intake/frames.py",
)
# What the oracle's posteriors depend on: the loader, the network and every inference module.
ORACLE_SOURCES = ("contract/*.py", "world/*.py")
ORACLE_EXCLUDED = (
    "sampling.py",
    "generate.py",
    "csv_text.py",
    "examples.py",
    "oracle_job.py",
    "versions.py",
    "belief.py",  # a model feature (loopy belief propagation), not part of the exact oracle
)


def _sources_hash(patterns: tuple[str, ...], excluded: tuple[str, ...] = ()) -> str:
    digest = hashlib.sha256()
    files = sorted({p for pattern in patterns for p in PACKAGE.glob(pattern) if p.name not in excluded})
    for path in files:
        digest.update(path.relative_to(PACKAGE).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


@cache
def generator_version() -> str:
    """A short hash of the generator's source files."""
    return _sources_hash(GENERATOR_SOURCES)


@cache
def oracle_version() -> str:
    """A short hash of the oracle's source files."""
    return _sources_hash(ORACLE_SOURCES, ORACLE_EXCLUDED)
