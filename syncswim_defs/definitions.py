"""The code location: load the sync declaration, build the definitions.

The declaration's path comes from `SYNCSWIM_PROJECT` (default `syncswim.yaml` in the
working directory). It is a location, not a secret; secrets stay in the environment
variables the YAML names and are read only when a run connects.
"""

from __future__ import annotations

import os

from syncswim_defs.factory import build_definitions

defs = build_definitions(os.environ.get("SYNCSWIM_PROJECT", "syncswim.yaml"))
