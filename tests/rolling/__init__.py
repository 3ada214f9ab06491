"""The `library` service in three releases, each run as its own process by the rolling-deploy
drill (tests/test_rolling_deploy.py): 1.0.0 (`library_v1`), 1.1.0 (`library_v2`, compatible)
and 1.2.0 (`library_v3`, breaking, which discovery refuses)."""
