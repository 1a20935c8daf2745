"""Reaching the cluster: connect to a scheduler or start a LocalCluster, and close what was started."""

from __future__ import annotations

import logging
from typing import Any

from flowyml_core.errors import FlowymlError

from flowyml_dask.config import DaskExecutorConfig

logger = logging.getLogger("flowyml.dask")


def connect(config: DaskExecutorConfig) -> tuple[Any, Any]:
    """``(client, cluster)``: a client of the scheduler at ``address``, or of a LocalCluster started
    here (``cluster`` is None when the cluster is someone else's)."""
    from distributed import Client

    cluster = None
    _quiet_dask_logging()
    if config.address:
        logger.info("connecting to the Dask scheduler at %s", config.address)
        try:
            client = Client(config.address, timeout=config.connect_timeout, set_as_default=False)
        except OSError as exc:
            raise FlowymlError(
                f"dask executor: no Dask scheduler answers at {config.address} within "
                f"{config.connect_timeout:g}s ({exc}); start it, or remove `address` to use a LocalCluster"
            ) from exc
    else:
        from distributed import LocalCluster

        scheduler_kwargs: dict[str, Any] = {"allowed_failures": config.allowed_failures}
        if config.dashboard_address is None:
            # No dashboard; the scheduler's small HTTP server (health, metrics) on a free loopback port
            # instead of 8787, which another cluster may hold.
            scheduler_kwargs.update(dashboard=False, dashboard_address="127.0.0.1:0")
        cluster = LocalCluster(
            n_workers=config.n_workers,
            threads_per_worker=config.threads_per_worker,
            processes=True,
            host="127.0.0.1",
            dashboard_address=config.dashboard_address,
            silence_logs=logging.ERROR,
            scheduler_kwargs=scheduler_kwargs,
        )
        logger.info("started a Dask LocalCluster at %s", cluster.scheduler_address)
        client = Client(cluster, set_as_default=False)
    try:  # warnings of flowyml code on the workers (a cache write that failed…) reach this process's log
        client.forward_logging("flowyml", level=logging.WARNING)
    except Exception as exc:  # an older distributed, or a scheduler that refuses plugins
        logger.debug("cannot forward worker logs: %r", exc)
    return client, cluster


def check_reachable(config: DaskExecutorConfig) -> None:
    """Raise a :class:`FlowymlError` unless dask.distributed is installed and, with ``address``, answers."""
    try:
        import distributed  # noqa: F401
    except ImportError as exc:
        raise FlowymlError(
            f"dask executor: dask.distributed is not installed ({exc}); pip install flowyml-dask "
            "--find-links dist (in a flowyml checkout, after bash scripts/build-wheels.sh)"
        ) from exc
    if config.address:
        from distributed import Client

        try:
            Client(config.address, timeout=config.connect_timeout, set_as_default=False).close()
        except OSError as exc:
            raise FlowymlError(
                f"dask executor: no Dask scheduler answers at {config.address} "
                f"within {config.connect_timeout:g}s ({exc}); start it or fix `address`"
            ) from exc


def shutdown(client: Any, cluster: Any) -> None:
    """Close what the executor opened; runs on close(), garbage collection or interpreter exit."""
    try:
        client.close()
    except Exception as exc:  # closing is best effort: report, never raise at exit
        logger.warning("closing the Dask client failed: %r", exc)
    if cluster is not None:
        try:
            cluster.close()
        except Exception as exc:
            logger.warning("closing the LocalCluster failed: %r", exc)


def _quiet_dask_logging() -> None:
    """Keep Dask's start-up and shutdown chatter (INFO) out of an application that logs at WARNING.

    Dask sets its ``distributed`` logger to INFO; when the application has
    configured the root logger itself (as ``flowyml run`` does), those records
    reach its handler. Under a verbose root (``flowyml --debug``) they stay.
    """
    dask_logger = logging.getLogger("distributed")
    if logging.getLogger().isEnabledFor(logging.INFO):
        return
    if dask_logger.level == logging.NOTSET or dask_logger.level < logging.WARNING:
        dask_logger.setLevel(logging.WARNING)
