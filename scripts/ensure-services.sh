#!/usr/bin/env bash
# Make sure the servers the platform needs answer; start the local ones that can be started.
set -u
pg_up()     { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null || (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }
redis_up()  { redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; }
rabbit_up() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }

start_pg()     { command -v pg_ctlcluster >/dev/null && pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start; }
start_redis()  { command -v redis-server >/dev/null && redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log; }
start_rabbit() { command -v rabbitmq-server >/dev/null && rabbitmq-server -detached; }

ensure() {
  local name=$1 check=$2 start=$3
  $check && return 0
  echo "$name is not running; starting it" >&2
  $start >/dev/null 2>&1 || true
  for _ in $(seq 1 60); do $check && return 0; sleep 1; done
  echo "error: $name is not reachable and could not be started (see README, 'Quick start')" >&2
  exit 1
}

ensure PostgreSQL pg_up start_pg
ensure Redis redis_up start_redis
ensure RabbitMQ rabbit_up start_rabbit
