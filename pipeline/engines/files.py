"""The files of a partitioned job: the input files an --input names, in name order, and output
directories of part files that appear only when the whole job succeeded."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from pipeline.intake.errors import IntakeFormatError

GLOB_CHARACTERS = "*?["
PART_PATTERN = "part-*.csv"


def input_files(spec: str) -> list[Path]:
    """The files `spec` names, in name order: a file, a directory (its files, except hidden ones
    and those starting with `_`), or a glob. Raises IntakeFormatError when it names none."""
    if spec == "-":
        raise IntakeFormatError("a distributed engine reads files: give --input a file, directory or glob")
    path = Path(spec)
    if path.is_file():
        return [path]
    if path.is_dir():
        found = [p for p in path.iterdir() if p.is_file() and not p.name.startswith((".", "_"))]
    elif any(c in spec for c in GLOB_CHARACTERS):
        found = [Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file()]
    else:
        raise IntakeFormatError(f"{spec}: no such file or directory")
    if not found:
        raise IntakeFormatError(f"{spec}: no input files there")
    return sorted(found, key=str)


def check_output_dirs(targets: list[Path], inputs: list[Path]) -> None:
    """Refuse output directories that would overwrite an input or anything but earlier part files."""
    resolved = [t.resolve() for t in targets]
    if len(set(resolved)) < len(resolved):
        raise IntakeFormatError(f"the scores and rejects need two different directories, not {targets[0]}")
    input_dirs = {p.resolve().parent for p in inputs} | {p.resolve() for p in inputs}
    for target, where in zip(targets, resolved, strict=True):
        if where in input_dirs:
            raise IntakeFormatError(f"{target}: is (or holds) an input; name a new directory for the output")
        if where.is_file():
            raise IntakeFormatError(f"{target}: is a file; the output is a directory of part files")
        if where.is_dir():
            others = [p.name for p in where.iterdir() if not p.match(PART_PATTERN)]
            if others:
                raise IntakeFormatError(
                    f"{target}: holds other files than part files ({', '.join(sorted(others)[:3])}); "
                    "refusing to replace it"
                )


@contextlib.contextmanager
def replaced_dirs(*targets: Path) -> Iterator[list[Path]]:
    """Empty temporary directories beside each target, swapped in for the targets only if the block
    succeeds; on any exception they are removed and the targets (earlier outputs too) are untouched."""
    targets = [Path(t) for t in targets]
    temps = [t.with_name(f".{t.name}.{os.getpid()}.partial") for t in targets]
    olds = [t.with_name(f".{t.name}.{os.getpid()}.old") for t in targets]
    try:
        for tmp in temps:
            tmp.parent.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
        yield temps
        for tmp, target, old in zip(temps, targets, olds, strict=True):
            if target.exists():
                os.replace(target, old)
            os.replace(tmp, target)
    finally:
        for leftover in [*temps, *olds]:
            shutil.rmtree(leftover, ignore_errors=True)
