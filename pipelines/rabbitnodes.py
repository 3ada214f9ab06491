"""RabbitMQ clusters: `RABBITMQ_URL` may name several nodes, comma-separated
(`amqp://user:pass@node1:5672,node2:5672,node3/vhost`). Every connection the platform opens
starts on the first node that answers, in that order; a connection whose node goes away
reconnects to the next one, and its robust channels declare again what they had declared
(queues, exchanges, bindings, consumers)."""

import logging
import re
from collections.abc import Sequence
from functools import partial
from typing import Any, TypeVar, cast

import aio_pika
from aio_pika import RobustConnection
from aio_pika.abc import AbstractRobustConnection
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from faststream.rabbit import RabbitBroker
from yarl import URL

log = logging.getLogger("banyan.rabbitmq")

# scheme, credentials, the comma-separated hosts, then the vhost and query every node shares
_URL_PARTS = re.compile(r"^(?P<scheme>[^:/]+://)(?:(?P<userinfo>[^@/]*)@)?(?P<hosts>[^/?#]*)")
PROBE_TIMEOUT = 5.0  # seconds a node may take to accept a connection before the next is tried
FAILOVER_INTERVAL = 1.0  # seconds at most between attempts when there is another node to try


B = TypeVar("B", bound=RabbitBroker)


def rabbitmq_nodes(url: str) -> list[URL]:
    """One URL per node named in `url`, in order; a single host is `url` as written."""
    parts = _URL_PARTS.match(url)
    hosts = [host.strip() for host in parts["hosts"].split(",")] if parts else []
    if parts is None or len(hosts) < 2:
        return [URL(url)]
    credentials = f"{parts['userinfo']}@" if parts["userinfo"] is not None else ""
    rest = url[parts.end() :]
    nodes = [URL(f"{parts['scheme']}{credentials}{host}{rest}") for host in hosts if host]
    return [node if node.port else node.with_port(default_port(node)) for node in nodes]


def default_port(node: URL) -> int:
    return 5671 if node.scheme == "amqps" else 5672


def nodes_url(nodes: Sequence[URL]) -> str:
    """The one URL naming every node of `nodes` (which share all but their host and port)."""
    first = nodes[0]
    hosts = ",".join(f"{node.host}:{node.port}" for node in nodes)
    return str(first).replace(f"{first.host}:{first.port}", hosts, 1)


class ClusterConnection(RobustConnection):
    """A robust connection over several nodes: each lost connection or failed attempt moves it
    on to the next node, round the list."""

    def __init__(self, url: URL, *, nodes: Sequence[URL], **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.nodes = list(nodes)
        if len(self.nodes) > 1:
            self.reconnect_interval = min(self.reconnect_interval, FAILOVER_INTERVAL)

    async def connect(self, timeout: aio_pika.abc.TimeoutType = None) -> None:
        if not self.connection_attempt:  # the first connection: skip the nodes that refuse
            self.url = await first_reachable(self.nodes, timeout)
        await super().connect(timeout)

    async def _on_connection_close(self, closing: Any) -> None:
        if not self._close_called:
            following = (self.nodes.index(self.url) + 1) if self.url in self.nodes else 0
            self.url = self.nodes[following % len(self.nodes)]
        await super()._on_connection_close(closing)


async def first_reachable(nodes: Sequence[URL], timeout: aio_pika.abc.TimeoutType) -> URL:
    """The first of `nodes` that accepts a connection, else the last (whose connection attempt
    then reports why it failed)."""
    for node in nodes[:-1]:
        try:
            probe = await aio_pika.connect(node, timeout=timeout or PROBE_TIMEOUT)
        except CONNECTION_EXCEPTIONS as exc:
            log.warning("RabbitMQ node %s:%s unreachable (%s); trying the next", node.host,
                        node.port, exc)  # fmt: skip
            continue
        await probe.close()
        return node
    return nodes[-1]


def _connection_class(url: str) -> tuple[URL, type[RobustConnection]]:
    nodes = rabbitmq_nodes(url)
    return nodes[0], cast(type[RobustConnection], partial(ClusterConnection, nodes=nodes))


async def connect_rabbitmq(url: str, **kwargs: Any) -> AbstractRobustConnection:
    """A robust connection to the cluster `url` names (one node or several)."""
    first, connection_class = _connection_class(url)
    connection = await aio_pika.connect_robust(first, connection_class=connection_class, **kwargs)
    return cast(AbstractRobustConnection, connection)


def cluster_broker(url: str, kind: type[B], **kwargs: Any) -> B:
    """A FastStream broker of class `kind` whose connection goes round the nodes `url` names."""
    first, connection_class = _connection_class(url)
    broker = kind(str(first), **kwargs)
    # FastStream hands these to aio-pika's connect_robust, which takes the connection's class
    broker._connection_kwargs["connection_class"] = connection_class
    return broker
