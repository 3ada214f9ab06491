"""Read models: projections folded from the event log, rebuilt on demand, queried and cached."""

from projections.documents import DocumentReader, Documents
from projections.projection import Projection, ProjectionError, SqlTable

__all__ = ["DocumentReader", "Documents", "Projection", "ProjectionError", "SqlTable"]
