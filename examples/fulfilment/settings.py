"""The fulfilment service's own settings: environment variables `FULFILMENT_*`."""

from pydantic_settings import BaseSettings, SettingsConfigDict


class FulfilmentSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FULFILMENT_", env_file=".env", extra="ignore")

    reserve_within: float = 30.0  # seconds inventory has to answer a reservation


settings = FulfilmentSettings()
