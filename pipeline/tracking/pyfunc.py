"""The MLflow pyfunc (models-from-code) behind `mlflow models predict/serve` and `spark_udf`.

It speaks the whole served contract (docs/intake-form.md, "The served model"): for every input
row, in input order and with the input's index, the scores-file columns plus `reject_reason`,
through the same intake path and scoring code as the batch scorer (pipeline.scoring.served);
with `params={"explain": True}` also `reasons` and `ask_next`, as `score --explain`.
A frame no form can be read from (a required column missing) is refused with a clear error.
"""

from __future__ import annotations

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class LegFatiguePyfunc(PythonModel):
    def load_context(self, context) -> None:
        from pipeline.contract.loader import default_knowledge_base
        from pipeline.tracking.persistence import load_model
        from pipeline.tracking.registry import logged_model_version

        self.model = load_model(context.artifacts["model"])
        self.kb = default_knowledge_base()
        self.version = logged_model_version(context.artifacts["model"])

    def _explainer(self):
        """The `--explain` columns' maker, built on the first request that asks for them."""
        if getattr(self, "explainer", None) is None:
            from pipeline.scoring.explain import Explainer
            from pipeline.world.network import default_model
            from pipeline.world.value_of_information import AskNext

            ask_next = AskNext(default_model(), self.kb.schema.explain.ask_next_max)
            self.explainer = Explainer(self.model, self.kb.schema, ask_next)
        return self.explainer

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        """The served columns; with params {"explain": true}, `reasons` and `ask_next` as `score --explain`."""
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        from pipeline.intake.errors import IntakeFormatError
        from pipeline.scoring.explain import ExplainError
        from pipeline.scoring.served import served_frame

        try:
            explainer = self._explainer() if (params or {}).get("explain") else None
            return served_frame(pd.DataFrame(model_input), self.model, self.kb, self.version, explainer)
        except (IntakeFormatError, ExplainError) as err:
            raise MlflowException(str(err), error_code=INVALID_PARAMETER_VALUE) from None


mlflow.models.set_model(LegFatiguePyfunc())
