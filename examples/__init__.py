"""Sample business services written only with the `pipelines` SDK."""
