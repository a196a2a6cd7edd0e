"""Cached data sets and oracle posteriors are keyed by what made them, code included: a change to
the generator or the oracle makes new files instead of reading stale ones."""

from __future__ import annotations

from helpers import KB

import pipeline.learning.splits as splits
from pipeline.intake.frames import parquet_metadata
from pipeline.world import versions


def test_a_cached_split_is_reused_and_a_new_generator_makes_a_new_one(tmp_path, monkeypatch):
    frame, sha, path = splits.load_split(KB, "train", "general", 300, 5, tmp_path)
    assert path.name.endswith(f"_gen{versions.generator_version()}.parquet")
    assert parquet_metadata(path)["leg_fatigue.generator"] == versions.generator_version()
    again, again_sha, again_path = splits.load_split(KB, "train", "general", 300, 5, tmp_path)
    assert again_path == path and again_sha == sha
    monkeypatch.setattr(splits, "generator_version", lambda: "0123456789ab")
    _, _, new_path = splits.load_split(KB, "train", "general", 300, 5, tmp_path)
    assert new_path != path and new_path.name.endswith("_gen0123456789ab.parquet") and new_path.exists()


def test_oracle_posteriors_are_keyed_by_the_oracle_code(tmp_path, monkeypatch):
    frame, sha, path = splits.load_split(KB, "validation", "general", 200, 5, tmp_path)
    first = splits.oracle_for(KB, "general", frame, path, sha)
    cached = sorted(p.name for p in tmp_path.glob("*.oracle-*"))
    assert cached == [f"{path.stem}.oracle-{sha[:12]}-{versions.oracle_version()}.parquet"]
    monkeypatch.setattr(splits, "oracle_version", lambda: "ba9876543210")
    second = splits.oracle_for(KB, "general", frame, path, sha)
    assert len(list(tmp_path.glob("*.oracle-*"))) == 2
    assert first.equals(second)  # the same code, recomputed under a new key: the same numbers


def test_versions_change_with_the_source(tmp_path, monkeypatch):
    (tmp_path / "contract").mkdir()
    (tmp_path / "world").mkdir()
    (tmp_path / "world" / "network.py").write_text("a = 1\n")
    monkeypatch.setattr(versions, "PACKAGE", tmp_path)
    before = versions._sources_hash(versions.GENERATOR_SOURCES)
    (tmp_path / "world" / "network.py").write_text("a = 2\n")
    assert versions._sources_hash(versions.GENERATOR_SOURCES) != before
