#!/bin/sh
# One-shot job (temporalio/admin-tools): create Temporal's two databases and bring their schemas
# to the version the pinned server expects. The temporalio/server image no longer does this itself
# (auto-setup is deprecated), so the server only starts after this job succeeded.
# Every step is idempotent: `docker compose up` runs it again each time, and it must then be a no-op
# (create tolerates an existing database, update-schema applies only missing versions).
set -eu

: "${POSTGRES_SEEDS:?}" "${POSTGRES_USER:?}" "${SQL_PASSWORD:?}"
DB_PORT="${DB_PORT:-5432}"
SCHEMA_ROOT=/etc/temporal/schema/postgresql/v12

sql_tool() {
  temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -p "$DB_PORT" -u "$POSTGRES_USER" "$@"
}

for db in temporal temporal_visibility; do
  case "$db" in
    temporal) schema_dir="$SCHEMA_ROOT/temporal/versioned" ;;
    *) schema_dir="$SCHEMA_ROOT/visibility/versioned" ;;
  esac
  sql_tool --db "$db" create
  sql_tool --db "$db" setup-schema -v 0.0
  sql_tool --db "$db" update-schema -d "$schema_dir"
done
echo "temporal schema ready"
