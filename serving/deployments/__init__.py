"""One Ray Serve deployment class per model family; each served model is one deployment.

`DEPLOYMENTS[kind]` maps a ModelSpec kind (params.yaml `serving.models`) to its class.
"""

from serving.deployments.base import ModelUnavailable, RegistryModel
from serving.deployments.entities import EntityModel
from serving.deployments.pair import PairModel
from serving.deployments.tabular import TabularModel
from serving.deployments.text import TextModel

DEPLOYMENTS = {
    "text": TextModel,
    "entities": EntityModel,
    "pair": PairModel,
    "tabular": TabularModel,
}

__all__ = [
    "DEPLOYMENTS",
    "EntityModel",
    "ModelUnavailable",
    "PairModel",
    "RegistryModel",
    "TabularModel",
    "TextModel",
]
