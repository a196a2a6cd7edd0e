"""Distributed engines: the single-machine intake path and `score_chunk`, run per file on a cluster.

`files` resolves an --input into input files and writes output directories atomically;
`file_tasks` is what one task does with one file (no engine code); `spark` runs those tasks
on Apache Spark (`score_spark`). PySpark is imported inside functions only.
"""
