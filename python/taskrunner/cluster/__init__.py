"""The same runner on a Dask cluster: ``TaskRunner(cluster=...)``.

Needs the ``[dask]`` extra (``dask`` and ``distributed``). See the docs'
cluster page for how tasks travel and what each worker runs.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DEFAULT_GRACE", "DEFAULT_MAX_ATTEMPTS", "ClusterUnreachable", "connect"]

DEFAULT_MAX_ATTEMPTS = 3
# Seconds a cluster runner waits for a lost scheduler before failing its tasks.
DEFAULT_GRACE = 30.0


class ClusterUnreachable(RuntimeError):
    """A cluster runner's scheduler is out of reach: submit again once it is back."""


def connect(
    runner: Any,
    cluster: Any,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    grace: float = DEFAULT_GRACE,
) -> Any:
    """A `ClusterLink` that sends `runner`'s tasks to `cluster`.

    Raises:
        ImportError: when Dask is not installed, naming the extra to install.
    """
    try:
        from taskrunner.cluster.link import ClusterLink
    except ImportError as exc:
        raise ImportError(
            f"TaskRunner(cluster=...) needs Dask: pip install 'taskrunner-rs[dask]' ({exc})"
        ) from exc
    return ClusterLink(runner, cluster, max_attempts=max_attempts, grace=grace)
