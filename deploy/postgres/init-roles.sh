#!/bin/bash
# Runs once, when the postgres volume is first initialised (/docker-entrypoint-initdb.d); changing
# a password here later needs `ALTER ROLE` or `docker compose down -v`.
#
# One role per kind of access, so no service connects as the superuser:
#   agentstream     owns database agentstream: gateway and worker (conversations, final answers)
#   agentstream_ro  read-only: the agent's SQL tools, so a bug or a prompt injection cannot write
#   temporal        may create databases: the temporal-schema job creates its two databases
#
# Passwords are passed as psql variables and quoted by psql (:'name'), never spliced into SQL text.
set -euo pipefail

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v app_pw="$AGENTSTREAM_DB_PASSWORD" \
  -v ro_pw="$AGENTSTREAM_RO_PASSWORD" \
  -v temporal_pw="$TEMPORAL_DB_PASSWORD" <<'SQL'
CREATE ROLE agentstream LOGIN PASSWORD :'app_pw';
CREATE ROLE agentstream_ro LOGIN PASSWORD :'ro_pw';
CREATE ROLE temporal LOGIN CREATEDB PASSWORD :'temporal_pw';
CREATE DATABASE agentstream OWNER agentstream;
SQL

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname agentstream <<'SQL'
-- Only the two agentstream roles may connect (PUBLIC's default CONNECT/TEMP are dropped).
REVOKE ALL ON DATABASE agentstream FROM PUBLIC;
GRANT CONNECT ON DATABASE agentstream TO agentstream, agentstream_ro;
GRANT USAGE ON SCHEMA public TO agentstream_ro;
-- Tables do not exist yet (the services create them), so grant on whatever agentstream creates.
ALTER DEFAULT PRIVILEGES FOR ROLE agentstream IN SCHEMA public GRANT SELECT ON TABLES TO agentstream_ro;
-- Belt and braces: even a future mistaken GRANT cannot make the agent's sessions write.
ALTER ROLE agentstream_ro SET default_transaction_read_only = on;
SQL
