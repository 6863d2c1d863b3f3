"""Con2 engine: datasets → selection → decoding → training → embedding → scoring → metrics.

torch/numpy only; the database and the UI live in `db/` and `dashboard/`, joined by `engine.worker`.
"""

import os

# OpenMP threads that spin while waiting for work collapse throughput when anything else shares the
# cores (the dashboard, a second worker, a test run): on a busy 2-core machine training ran ~25×
# slower. Passive waiting costs nothing measurable when the machine is idle. Set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
