"""Metric samples as Elasticsearch documents: one per series and interval.

Counters and histograms are shipped as what changed since the previous interval (series that
did not change are left out), so that a dashboard sums documents over any time range; gauges as
their current value. Histograms carry count, sum, average and estimated percentiles.
"""

import math
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from pydantic.alias_generators import to_camel

QUANTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}
BASE_FIELDS = {
    "@timestamp": "date",
    "metric": "keyword",  # the family name as on /metrics, e.g. banyan_handler_seconds
    "type": "keyword",  # counter, gauge or histogram
    "service": "keyword",  # the label, else the process that shipped the document
    "process": "keyword",
    "host": "keyword",
    "pid": "long",
}
VALUE_FIELDS = {
    "value": "double",  # counters: increase over the interval; gauges: current value
    "total": "double",  # counters: value since the process started
    "count": "long",  # histograms: observations in the interval
    "sum": "double",
    "avg": "double",
    **{name: "double" for name in QUANTILES},
}
LABEL_FIELDS = (
    "messageType", "kind", "code", "destination", "outcome", "queue", "projection", "result",
    "eventType", "protocol", "method", "status",
)  # fmt: skip
FIELDS = {**BASE_FIELDS, **VALUE_FIELDS, **{name: "keyword" for name in LABEL_FIELDS}}

SeriesKey = tuple[str, tuple[tuple[str, str], ...]]


def index_template(prefix: str) -> dict[str, Any]:
    """The index template of the daily metric indices `{prefix}-YYYY.MM.DD`."""
    return {
        "index_patterns": [f"{prefix}-*"],
        "template": {
            "settings": {"number_of_shards": 1, "number_of_replicas": 0},
            "mappings": {
                "dynamic_templates": [
                    {"labels": {"match_mapping_type": "string", "mapping": {"type": "keyword"}}}
                ],
                "properties": {name: {"type": kind} for name, kind in FIELDS.items()},
            },
        },
    }


def index_name(prefix: str, when: datetime) -> str:
    return f"{prefix}-{when:%Y.%m.%d}"


class Snapshot:
    """Turns one registry into documents, remembering what it shipped last time."""

    def __init__(self, registry: CollectorRegistry, service: str | None = None) -> None:
        self.registry = registry
        self.service = service  # for families without a `service` label
        self._last: dict[SeriesKey, float] = {}

    def documents(self, base: dict[str, Any]) -> list[dict[str, Any]]:
        if self.service is not None:
            base = {**base, "service": self.service}
        out: list[dict[str, Any]] = []
        for family in self.registry.collect():
            if family.type == "counter":
                out.extend(self._counter(family, base))
            elif family.type == "gauge":
                out.extend(_gauge(family, base))
            elif family.type == "histogram":
                out.extend(self._histogram(family, base))
        return out

    def _counter(self, family: Metric, base: dict[str, Any]) -> Iterable[dict[str, Any]]:
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            delta = self._delta((sample.name, _key(sample.labels)), sample.value)
            if delta:
                yield _document(base, sample.name, "counter", sample.labels, value=delta,
                                total=sample.value)  # fmt: skip

    def _histogram(self, family: Metric, base: dict[str, Any]) -> Iterable[dict[str, Any]]:
        series: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
        for sample in family.samples:
            labels = {k: v for k, v in sample.labels.items() if k != "le"}
            entry = series.setdefault(_key(labels), {"labels": labels, "buckets": []})
            kind = sample.name.removeprefix(family.name)
            if kind == "_bucket":
                entry["buckets"].append((float(sample.labels["le"]), sample.value))
            elif kind in ("_count", "_sum"):
                entry[kind] = sample.value
        for key, entry in series.items():
            count = self._delta((family.name + "_count", key), entry.get("_count", 0.0))
            if not count:
                continue
            total = self._delta((family.name + "_sum", key), entry.get("_sum", 0.0))
            buckets = [(le, self._delta((family.name + str(le), key), n)) for le, n in
                       sorted(entry["buckets"])]  # fmt: skip
            yield _document(
                base, family.name, "histogram", entry["labels"], count=int(count), sum=total,
                avg=total / count,
                **{name: _quantile(q, buckets, count) for name, q in QUANTILES.items()},
            )  # fmt: skip

    def _delta(self, key: SeriesKey, value: float) -> float:
        last = self._last.get(key, 0.0)
        self._last[key] = value
        return value - last if value >= last else value  # below: the series was reset


def _gauge(family: Metric, base: dict[str, Any]) -> Iterable[dict[str, Any]]:
    for sample in family.samples:
        yield _document(base, sample.name, "gauge", sample.labels, value=sample.value)


def _document(
    base: dict[str, Any], metric: str, kind: str, labels: dict[str, str], **values: float
) -> dict[str, Any]:
    doc = {**base, "metric": metric, "type": kind, **values}
    for name, value in labels.items():
        doc[_field(name)] = value
    return doc


def _quantile(q: float, buckets: list[tuple[float, float]], count: float) -> float:
    """Like PromQL's histogram_quantile over the interval's bucket increases (cumulative)."""
    target, lower, below = q * count, 0.0, 0.0
    for upper, cumulative in buckets:
        if cumulative >= target:
            if math.isinf(upper):
                return lower
            share = (target - below) / (cumulative - below) if cumulative > below else 1.0
            return lower + (upper - lower) * share
        lower, below = upper, cumulative
    return lower


def _key(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


_FIELD_NAMES: dict[str, str] = {}


def _field(label: str) -> str:
    if label not in _FIELD_NAMES:
        _FIELD_NAMES[label] = to_camel(label)
    return _FIELD_NAMES[label]
