"""The registered embedding model as MLflow "models from code": MLflow runs this file to build the model.

:func:`tasks.registry.register_table` hands this file's path to ``mlflow.pyfunc.save_model``, which
copies it into the model; ``mlflow.pyfunc.load_model`` and ``mlflow models serve`` run that copy
instead of unpickling an object. The default OOV policy comes from the model's ``model_config``
(:meth:`pipeline.serving.EmbeddingModel.load_context`), the table from its artifacts.

Not meant to be imported: running it is what registers the model with MLflow.
"""

from mlflow.models import set_model

from pipeline.serving import EmbeddingModel

set_model(EmbeddingModel())  # not bound to a name: this module keeps no reference to the loaded table
