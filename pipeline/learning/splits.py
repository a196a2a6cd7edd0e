"""Train / calibration / validation / test sets, generated once and reused by content hash.

A file is named by what made it (split, population, N, seed, KB hash), and its oracle
posterior is cached beside it; nothing generated is ever edited by hand.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.contract.knowledge import KnowledgeBase
from pipeline.contract.schema import DATA_DIR
from pipeline.intake.frames import parquet_metadata, read_parquet_dataset
from pipeline.intake.outputs import atomic_paths
from pipeline.world.generate import write_dataset
from pipeline.world.network import compile_model
from pipeline.world.oracle import posterior_probabilities
from pipeline.world.versions import generator_version, oracle_version

CACHE_DIR = DATA_DIR / "cache"
SPLITS = ("train", "calibration", "validation", "test", "evaluation")


def split_seed(seed: int, split: str) -> int:
    """A seed of its own for each split, derived from the experiment seed."""
    return int(np.random.SeedSequence([seed, SPLITS.index(split)]).generate_state(1)[0])


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dataset_path(kb: KnowledgeBase, split: str, population: str, n: int, seed: int) -> Path:
    """Named by everything that made it: split, population, N, seed, knowledge base and generator code."""
    return CACHE_DIR / f"{split}_{population}_n{n}_seed{seed}_kb{kb.short_hash}_gen{generator_version()}.parquet"


def load_split(
    kb: KnowledgeBase, split: str, population: str, n: int, seed: int, cache_dir: Path | None = None
) -> tuple[pd.DataFrame, str, Path]:
    """(typed frame with labels, content sha256, path): generated unless a matching file exists."""
    path = dataset_path(kb, split, population, n, split_seed(seed, split))
    if cache_dir is not None:
        path = Path(cache_dir) / path.name
    meta = parquet_metadata(path) if path.exists() else {}
    if meta.get("leg_fatigue.kb_sha256") != kb.sha256 or meta.get("leg_fatigue.generator") != generator_version():
        write_dataset(compile_model(kb, population), n, split_seed(seed, split), path, "parquet")
    return read_parquet_dataset(path, kb.schema), file_sha256(path), path


def oracle_for(kb: KnowledgeBase, population: str, frame: pd.DataFrame, data_path: Path, data_sha: str) -> pd.DataFrame:
    """The oracle's p_ columns for a cached data set, computed once per data content and oracle code."""
    path = data_path.with_name(data_path.stem + f".oracle-{data_sha[:12]}-{oracle_version()}.parquet")
    if path.exists():
        return pq.read_table(path).to_pandas()
    post = posterior_probabilities(compile_model(kb, population), frame)
    with atomic_paths(path) as (tmp,):
        pq.write_table(pa.Table.from_pandas(post.reset_index(drop=True)), tmp)
    return post.reset_index(drop=True)
