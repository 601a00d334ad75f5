"""Figures of the studies, one module per study (``report/studies/<study>.py``), each drawing its claim.

Every module here registers its drawings with `losslab.report.draws` on import; all are
imported, so a new study's figures need no line here.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
