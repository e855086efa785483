"""The same runner on a Dask cluster: ``TaskRunner(cluster=...)``.

Needs the ``[dask]`` extra (``dask`` and ``distributed``). See the docs'
cluster page for how tasks travel and what each worker runs.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DEFAULT_MAX_ATTEMPTS", "connect"]

DEFAULT_MAX_ATTEMPTS = 3


def connect(runner: Any, cluster: Any, max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> Any:
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
    return ClusterLink(runner, cluster, max_attempts=max_attempts)
