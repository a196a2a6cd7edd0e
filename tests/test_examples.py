"""The committed example export is exactly what pipeline.world.examples writes (never hand-edited)."""

from pipeline.world.examples import SAMPLE_PATH, sample_text


def test_sample_file_is_generated_not_edited():
    assert SAMPLE_PATH.read_text(encoding="utf-8") == sample_text()
