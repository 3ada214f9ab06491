"""A benchmark run's own RabbitMQ vhost, PostgreSQL schema and cache prefix, with quiet logs."""

import logging
import os

from pipelines.settings import Settings
from pipelines.testing.isolation import create_isolated_env


def isolated_settings(relay: bool) -> tuple[Settings, dict[str, str]]:
    """Settings of this run (set before any platform code reads them) and what to drop after."""
    logging.getLogger().setLevel(logging.WARNING)  # services configure logging from LOG_LEVEL
    env = create_isolated_env()
    os.environ.update(env)
    os.environ.update(
        {
            "LOG_LEVEL": "WARNING",
            "RELAY_ENABLED": str(relay).lower(),
            "ANNOUNCE_ENABLED": "false",  # no discovery service in a benchmark
            "CACHE_PREFIX": f"banyan-bench-{env['BANYAN_TEST_RUN']}",
        }
    )
    return Settings(), env
