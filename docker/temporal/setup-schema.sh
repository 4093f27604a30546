#!/bin/sh
# One-shot: create Temporal's two PostgreSQL databases and bring their schemas up to date.
# Runs in temporalio/admin-tools on every `docker compose up`; every step is idempotent
# (create ignores an existing database, update-schema applies only missing versions), so it
# also migrates the schema after the image versions are raised.
set -eu

: "${POSTGRES_SEEDS:?}" "${POSTGRES_USER:?}" "${SQL_PASSWORD:?}"
PORT="${DB_PORT:-5432}"
SCHEMA_ROOT=/etc/temporal/schema/postgresql/v12

echo "waiting for PostgreSQL at ${POSTGRES_SEEDS}:${PORT}"
attempt=0
until nc -z "$POSTGRES_SEEDS" "$PORT"; do
  attempt=$((attempt + 1))
  if [ "$attempt" -ge 60 ]; then
    echo "PostgreSQL at ${POSTGRES_SEEDS}:${PORT} did not answer in 120 s" >&2
    exit 1
  fi
  sleep 2
done

for pair in "${DBNAME:-temporal}:temporal" "${VISIBILITY_DBNAME:-temporal_visibility}:visibility"; do
  db="${pair%%:*}"
  kind="${pair##*:}"
  tool="temporal-sql-tool --plugin postgres12 --ep $POSTGRES_SEEDS -u $POSTGRES_USER -p $PORT --db $db"
  echo "database ${db}: create, setup, update (${kind} schema)"
  $tool create
  $tool setup-schema -v 0.0
  $tool update-schema -d "${SCHEMA_ROOT}/${kind}/versioned"
done
echo "Temporal schemas are up to date"
