"""Connectors (modality interfaces) between a vision encoder and a language model.

Every module in this folder is imported here, so a new connector is one new file whose
class carries `@register_connector("name")`; recipes then pick it by that name.
"""

import importlib
import pkgutil

from ocelli.model.connectors.base import Connector

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["Connector"]
