#!/usr/bin/env bash
# `make cluster`: on this one machine, 3 clustered RabbitMQ nodes, a PostgreSQL primary and a
# standby streaming from it, a Redis master, a replica and 3 Sentinels; each on its own ports,
# its state under build/cluster. The settings that reach it are written to
# build/cluster/cluster.env. `make cluster-down` removes it all.
set -Eeuo pipefail
source "$(dirname "$0")/cluster-env.sh"

wait_for() {  # wait_for WHAT COMMAND...: up to 60 s for COMMAND to succeed
  local what=$1
  shift
  for _ in $(seq 1 120); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
  echo "error: $what did not come up (state in $STATE)" >&2
  exit 1
}

rabbitmq_up() {
  mkdir -p "$STATE/rabbitmq"
  echo "[]." >"$STATE/rabbitmq/enabled_plugins"
  echo 'ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}"' >"$STATE/rabbitmq/rabbitmq-env.conf"
  for i in "${RABBIT_NODES[@]}"; do
    rabbit_env "$i"
    mkdir -p "$RABBITMQ_MNESIA_BASE" "$RABBITMQ_LOG_BASE"
    printf 'listeners.tcp.1 = 127.0.0.1:%s\nloopback_users.guest = true\n' \
      "$RABBITMQ_NODE_PORT" >"$RABBITMQ_CONFIG_FILE"
    "$RABBIT_BIN/rabbitmq-server" -detached
    wait_for "RabbitMQ node $RABBITMQ_NODENAME" rabbitmqctl_on "$i" await_startup
  done
  for i in "${RABBIT_NODES[@]:1}"; do
    rabbitmqctl_on "$i" stop_app >/dev/null
    rabbitmqctl_on "$i" join_cluster "banyan1@localhost" >/dev/null
    rabbitmqctl_on "$i" start_app >/dev/null
  done
  echo "RabbitMQ: $(rabbitmqctl_on 1 -q cluster_status --formatter json |
    python3 -c 'import json,sys; print(", ".join(json.load(sys.stdin)["running_nodes"]))')"
}

postgres_conf() {  # postgres_conf DIR PORT: its own port and socket folder, streaming allowed
  cat >>"$1/postgresql.conf" <<EOF
port = $2
listen_addresses = '127.0.0.1'
unix_socket_directories = '$STATE/postgres'
wal_level = replica
max_wal_senders = 5
hot_standby = on
EOF
}

postgres_up() {
  local dir="$STATE/postgres"
  mkdir -p "$dir" && chown postgres "$dir"
  as_postgres "$PG_BIN/initdb" -D "$dir/primary" -U postgres --auth=trust >/dev/null
  postgres_conf "$dir/primary" "$PG_PRIMARY_PORT"
  echo "host replication postgres 127.0.0.1/32 trust" >>"$dir/primary/pg_hba.conf"
  as_postgres "$PG_BIN/pg_ctl" -D "$dir/primary" -l "$dir/primary.log" -w start >/dev/null
  as_postgres "$PG_BIN/pg_basebackup" -h 127.0.0.1 -p "$PG_PRIMARY_PORT" -U postgres \
    -D "$dir/standby" -R -X stream
  postgres_conf "$dir/standby" "$PG_STANDBY_PORT"
  as_postgres "$PG_BIN/pg_ctl" -D "$dir/standby" -l "$dir/standby.log" -w start >/dev/null
  wait_for "the PostgreSQL standby's stream" as_postgres "$PG_BIN/psql" -h 127.0.0.1 \
    -p "$PG_PRIMARY_PORT" -U postgres -tAc "SELECT 1/count(*) FROM pg_stat_replication"
  echo "PostgreSQL: primary :$PG_PRIMARY_PORT, standby :$PG_STANDBY_PORT (streaming)"
}

redis_up() {
  local dir="$STATE/redis"
  mkdir -p "$dir"
  local common=(--bind 127.0.0.1 --save "" --appendonly no --dir "$dir" --daemonize yes)
  redis-server "${common[@]}" --port "$REDIS_MASTER_PORT" \
    --pidfile "$dir/master.pid" --logfile "$dir/master.log"
  redis-server "${common[@]}" --port "$REDIS_REPLICA_PORT" \
    --replicaof 127.0.0.1 "$REDIS_MASTER_PORT" \
    --pidfile "$dir/replica.pid" --logfile "$dir/replica.log"
  for port in "${SENTINEL_PORTS[@]}"; do
    cat >"$dir/sentinel-$port.conf" <<EOF
port $port
bind 127.0.0.1
daemonize yes
dir $dir
pidfile $dir/sentinel-$port.pid
logfile $dir/sentinel-$port.log
sentinel monitor $REDIS_MASTER_NAME 127.0.0.1 $REDIS_MASTER_PORT 2
sentinel down-after-milliseconds $REDIS_MASTER_NAME 2000
sentinel failover-timeout $REDIS_MASTER_NAME 10000
EOF
    redis-server "$dir/sentinel-$port.conf" --sentinel
  done
  wait_for "the Redis replica's link" sh -c \
    "redis-cli -p $REDIS_REPLICA_PORT info replication | grep -q master_link_status:up"
  wait_for "the Sentinels" sh -c "redis-cli -p ${SENTINEL_PORTS[0]} sentinel ckquorum \
    $REDIS_MASTER_NAME | grep -q OK"
  echo "Redis: master :$REDIS_MASTER_PORT, replica :$REDIS_REPLICA_PORT," \
    "Sentinels :${SENTINEL_PORTS[*]} (master name $REDIS_MASTER_NAME)"
}

write_env() {
  local rabbit="" sentinels=""
  for i in "${RABBIT_NODES[@]}"; do rabbit+="127.0.0.1:$((RABBIT_PORT_BASE + i)),"; done
  for port in "${SENTINEL_PORTS[@]}"; do sentinels+="127.0.0.1:$port,"; done
  cat >"$STATE/cluster.env" <<EOF
RABBITMQ_URL=amqp://guest:guest@${rabbit%,}/
RABBITMQ_QUEUE_TYPE=quorum
DATABASE_URL=postgresql://postgres@127.0.0.1:$PG_PRIMARY_PORT,127.0.0.1:$PG_STANDBY_PORT/postgres?target_session_attrs=read-write
REDIS_SENTINELS=${sentinels%,}
REDIS_MASTER_NAME=$REDIS_MASTER_NAME
EOF
  echo "settings: $STATE/cluster.env (set -a; . $STATE/cluster.env; set +a)"
}

if [ -e "$STATE" ]; then
  echo "error: $STATE exists: a cluster is up (or was left behind); make cluster-down first" >&2
  exit 1
fi
mkdir -p "$STATE"
trap 'echo "cluster start failed; removing what started" >&2; "$ROOT/scripts/cluster-down.sh"' ERR
rabbitmq_up
postgres_up
redis_up
write_env
