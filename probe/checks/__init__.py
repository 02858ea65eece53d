"""The check catalogue: every module in this package declares its checks with `@check`.

Adding a check means adding a function to a module here (or a new module); the engine finds it
through `catalogue()` and never names a check itself.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping

from probe.checks.base import Check, registry


def catalogue() -> Mapping[str, Check]:
    for module in pkgutil.iter_modules(__path__):
        if module.name != "base":
            importlib.import_module(f"{__name__}.{module.name}")
    return registry()
