# The local cluster's layout (sourced by cluster-up.sh and cluster-down.sh): its ports and
# where its state lives. Nothing here is the machine's own RabbitMQ (rabbit@<host> on 5672),
# PostgreSQL (5432) or Redis (6379).
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${CLUSTER_STATE:-$ROOT/build/cluster}

RABBIT_NODES=(1 2 3)               # banyan1@localhost .. banyan3@localhost
RABBIT_PORT_BASE=5680              # AMQP on 5681-5683
RABBIT_DIST_BASE=25680             # Erlang distribution on 25681-25683
RABBIT_BIN=/usr/lib/rabbitmq/bin   # the scripts themselves: /usr/sbin's wrappers switch user

PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
PG_PRIMARY_PORT=5441
PG_STANDBY_PORT=5442

REDIS_MASTER_PORT=6391
REDIS_REPLICA_PORT=6392
SENTINEL_PORTS=(26391 26392 26393)
REDIS_MASTER_NAME=banyan

# the environment of one RabbitMQ node of the local cluster
rabbit_env() {
  local i=$1 dir="$STATE/rabbitmq/banyan$1"
  export HOME="$STATE/rabbitmq"  # its own Erlang cookie, shared by the three nodes
  export RABBITMQ_NODENAME="banyan$i@localhost"
  export RABBITMQ_NODE_PORT=$((RABBIT_PORT_BASE + i))
  export RABBITMQ_DIST_PORT=$((RABBIT_DIST_BASE + i))
  export RABBITMQ_MNESIA_BASE="$dir/mnesia"
  export RABBITMQ_LOG_BASE="$dir/log"
  export RABBITMQ_PID_FILE="$dir/pid"
  export RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf"
  export RABBITMQ_CONF_ENV_FILE="$STATE/rabbitmq/rabbitmq-env.conf"
  export RABBITMQ_ENABLED_PLUGINS_FILE="$STATE/rabbitmq/enabled_plugins"  # none: no management
}

rabbitmqctl_on() {  # rabbitmqctl_on N ARGS...: rabbitmqctl against node N of the local cluster
  local i=$1
  shift
  (rabbit_env "$i" && "$RABBIT_BIN/rabbitmqctl" -n "$RABBITMQ_NODENAME" "$@")
}

as_postgres() { runuser -u postgres -- "$@"; }
