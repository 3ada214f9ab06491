"""How process managers pace themselves: environment variables `FLOWS_*`."""

import random

from pydantic_settings import BaseSettings, SettingsConfigDict


class FlowSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FLOWS_", env_file=".env", extra="ignore")

    tick_interval: float = 1.0  # seconds between looks for runs that are due
    lease: float = 15.0  # seconds a process owns a run it drives; a crashed one's resume after it
    reply_timeout: float = 10.0  # seconds one send waits for its answer before trying later
    retry_initial_delay: float = 0.5
    retry_max_delay: float = 30.0
    concurrency: int = 100  # runs one process drives at once
    # seconds a finished run and its steps are kept; 0 keeps them forever. An event that
    # started a run and arrives again after its run was deleted starts a new run.
    run_retention: float = 7 * 24 * 3600.0

    def retry_delay(self, attempt: int) -> float:
        """Exponential backoff with jitter, so that runs that clashed do not clash again."""
        base = min(self.retry_max_delay, self.retry_initial_delay * 2.0 ** max(0, attempt - 1))
        return base * random.uniform(0.75, 1.25)
