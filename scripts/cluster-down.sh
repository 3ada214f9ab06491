#!/usr/bin/env bash
# `make cluster-down`: stop what `make cluster` started and remove build/cluster. Only its own
# processes are stopped: by node name, data folder and pid file, never by program name.
set -uo pipefail
source "$(dirname "$0")/cluster-env.sh"

[ -d "$STATE" ] || { echo "no local cluster ($STATE absent)"; exit 0; }

for i in "${RABBIT_NODES[@]}"; do
  pidfile="$STATE/rabbitmq/banyan$i/pid"
  [ -f "$pidfile" ] || continue
  rabbitmqctl_on "$i" stop "$pidfile" >/dev/null 2>&1 || kill "$(cat "$pidfile")" 2>/dev/null
done

for node in primary standby; do
  dir="$STATE/postgres/$node"
  [ -f "$dir/postmaster.pid" ] && as_postgres "$PG_BIN/pg_ctl" -D "$dir" -m fast -w stop >/dev/null
done

for pidfile in "$STATE"/redis/*.pid; do
  [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null
done
for pidfile in "$STATE"/redis/*.pid; do  # each removes its pid file as it exits
  for _ in $(seq 1 40); do [ -f "$pidfile" ] || break; sleep 0.25; done
done

rm -rf "$STATE"
echo "local cluster removed"
