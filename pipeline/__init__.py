"""Leg-fatigue risk scoring: decision support on synthetic data, not a diagnosis.

Subpackages, from the bottom floor up (a module imports only from its own floor or below):

    contract   the intake schema, the knowledge base and its red-flag rules
    intake     reading, validating and typing forms; writing outputs atomically
    world      the compiled network, the generator, the exact oracle
    scoring    triage and the batch scorer
    tracking   MLflow: the store, the registry, model files, the pyfunc
    learning   features, the cause model, calibration, metrics, training, evaluation
    reporting  the batch report (score --report)
    engines    the same scoring on Apache Spark, one task per file (score --engine spark)

`cli`, `demo` and `bench` sit on top.
"""

DISCLAIMER = "Decision support on synthetic data, not a diagnosis."
