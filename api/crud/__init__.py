"""The service layer: every database read and write of the API, the dashboard and the worker.

One module per concern (production code imports the module it needs)::

    lifecycle    a job's status, lease, fencing, requeue, dispatch, reconciler queries
    experiments  experiments and sweeps as records: create, read, delete
    listing      filters, sorts, cursors, counts by status, changes since
    metrics      metric series and the (params, accuracy) points of the analysis
    files        stored files: paths, hash records, lookups
    tokens       API tokens
    errors       ConflictError (409), CursorError (422)

This package hands their names on, so ``crud.claim_experiment`` and the like keep working.
"""

from .errors import ConflictError, CursorError
from .experiments import (
    count_dispatched,
    create_experiment,
    create_sweep,
    delete_experiment,
    get_experiment,
    get_result,
    get_sweep,
    list_sweeps,
    results_of,
    sweep_counts,
)
from .files import FileRecord, artifact_relpath, file_record, get_file, ids_with_file
from .lifecycle import (
    RESULT_COLUMNS,
    HeartbeatState,
    Lease,
    claim_experiment,
    fail_experiment,
    finalize_abandoned_cancels,
    finish_experiment,
    heartbeat,
    is_cancel_requested,
    mark_cancelled,
    mark_dispatched,
    prune_experiment,
    record_metrics,
    redispatch_candidates,
    report_progress,
    request_cancel,
    retry_experiment,
)
from .listing import (
    SORTS,
    ListFilter,
    changed_since,
    count_by_status,
    list_experiments,
    list_summaries,
)
from .metrics import Point, gap_points, metric_series, ood_results, power_law_points
from .tokens import TokenCache, check_token, create_token, hash_token

__all__ = [
    "RESULT_COLUMNS", "SORTS", "ConflictError", "CursorError", "FileRecord", "HeartbeatState",
    "Lease", "ListFilter", "TokenCache", "Point", "artifact_relpath", "changed_since", "check_token",
    "claim_experiment", "count_by_status", "count_dispatched", "create_experiment", "create_sweep", "create_token",
    "delete_experiment", "fail_experiment", "file_record", "finalize_abandoned_cancels",
    "finish_experiment", "get_experiment", "prune_experiment", "get_file", "get_result", "get_sweep", "hash_token",
    "heartbeat", "ids_with_file", "is_cancel_requested", "list_experiments", "list_summaries", "list_sweeps",
    "mark_cancelled", "mark_dispatched", "gap_points", "metric_series", "ood_results", "power_law_points", "record_metrics",
    "redispatch_candidates", "report_progress", "results_of", "request_cancel", "retry_experiment",
    "sweep_counts",
]  # fmt: skip
