"""The MLflow pyfunc (models-from-code): a DataFrame of intake columns in, the p_ columns out.

Input cells are read exactly as the intake contract says (pipeline.intake.validate). A row the
contract rejects comes back with NaN probabilities, and the reason is logged.
"""

from __future__ import annotations

import logging

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

log = logging.getLogger(__name__)


class LegFatiguePyfunc(PythonModel):
    def load_context(self, context) -> None:
        from pipeline.tracking.persistence import load_model

        self.model = load_model(context.artifacts["model"])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        from pipeline.contract.schema import default_schema
        from pipeline.intake.stream import iter_validated

        schema = default_schema()
        frame = model_input.copy()
        if schema.id_column not in frame.columns:
            frame[schema.id_column] = [f"row-{i + 1}" for i in range(len(frame))]
        rows = np.arange(1, len(frame) + 1)
        out = pd.DataFrame(np.nan, index=pd.Index(rows, name="row"), columns=list(schema.probability_columns))
        for chunk in iter_validated(frame, schema):
            for line in chunk.rejects.itertuples(index=False):
                log.warning("row %s field %s: %s", line.row, line.field, line.reason)
            if len(chunk.typed):
                out.loc[chunk.typed.index] = self.model.predict_frame(chunk.typed).to_numpy()
        return out.reset_index(drop=True)


mlflow.models.set_model(LegFatiguePyfunc())
