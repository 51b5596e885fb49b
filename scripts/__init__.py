"""Developer scripts: the local Airflow stack behind `make demo`, `make up` and `make down`."""

import sys
from pathlib import Path

# plugins/ on the path as Airflow puts it, so the scripts use the one table of statuses and error meanings.
_PLUGINS = str(Path(__file__).resolve().parent.parent / "plugins")
if _PLUGINS not in sys.path:
    sys.path.insert(0, _PLUGINS)
