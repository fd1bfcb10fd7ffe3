"""A search trial's evaluations as intermediate values, and the pruner's stop (torch-free).

:class:`IntermediateReporter` is an engine callback: after each evaluation (an epoch's record) it
hands the objective's value to ``report(step, value)``, which returns True when the trial should
be pruned; then ``should_stop`` says so and the engine stops before the next step (the epoch just
evaluated is the run's last: its curve and metrics are kept). The service's worker passes a
``report`` that calls Optuna's ``trial.report`` and ``trial.should_prune`` (``worker.runner``);
``benchmarks/bench_search.py`` passes the same with an in-process study. The library itself
knows nothing of Optuna.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Report = Callable[[int, float], bool]  # (step, value) -> prune?


class IntermediateReporter:
    """Report ``val_<metric>`` of every evaluation; stop once ``report`` says prune."""

    def __init__(self, metric: str, report: Report) -> None:
        self.key = f"val_{metric}"
        self.report = report
        self.pruned = False
        self.pruned_at: int | None = None
        self.values: list[tuple[int, float]] = []

    def on_epoch_end(self, epoch: int, metrics: dict[str, Any]) -> None:
        value = metrics.get(self.key)
        if self.pruned or not isinstance(value, int | float) or not math.isfinite(value):
            return
        self.values.append((int(epoch), float(value)))
        if self.report(int(epoch), float(value)):
            self.pruned, self.pruned_at = True, int(epoch)
            log.info("pruned after evaluation %d (%s = %.4f)", epoch, self.key, value)

    def should_stop(self) -> bool:
        return self.pruned
