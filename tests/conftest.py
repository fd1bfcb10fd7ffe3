"""Suite-wide settings: one intra-op thread per test process.

The CI machine has 2 cores and the integration tests run worker subprocesses beside pytest; with
torch's default threads they oversubscribe the cores and run many times slower.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by the subprocesses tests start

import torch  # noqa: E402

torch.set_num_threads(1)
