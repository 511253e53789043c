"""tda-plugin: training data attribution by unlearning for music generative models.

``import tda_plugin`` needs no toolkit; adapters import theirs when a model is loaded.
"""
from .attributor import AttributionResult, Attributor
from .errors import TdaError
from .hookspecs import HOOKSPEC_VERSION, hookimpl
from .settings import AttributeSettings, IndexSettings, UnlearnSettings

__version__ = "0.1.0"
__all__ = ["Attributor", "AttributionResult", "AttributeSettings", "IndexSettings", "UnlearnSettings",
           "TdaError", "hookimpl", "HOOKSPEC_VERSION", "__version__"]
