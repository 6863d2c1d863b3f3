"""Con2 engine: datasets → selection → decoding → training → embedding → scoring → metrics.

torch/numpy only; the database and the UI live in `db/` and `dashboard/`, joined by the `worker/` package,
which imports the engine (never the reverse).
"""

import os

# OpenMP threads spin-wait between operations. When two processes train on the same cores (a second
# worker, a test run) the default spinning collapses both: measured on 2 cores, 27 img/s each instead
# of ~600 alone. A short spin (GOMP_SPINCOUNT=10000) keeps the idle speed (618 img/s) and gives 126
# img/s each when paired; fully passive waiting pairs better (267) but costs 45% alone (344), and a
# lone worker is the common case. Set before torch loads; a user's own setting wins.
os.environ.setdefault("GOMP_SPINCOUNT", "10000")
