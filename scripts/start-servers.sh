#!/usr/bin/env bash
# Starts the database and cache servers the tests use, on 127.0.0.1, with the
# test users the tests expect. Safe to run again.
set -euo pipefail

service mariadb start >/dev/null 2>&1 || service mysql start >/dev/null
service postgresql start >/dev/null
for i in $(seq 1 60); do
  mysqladmin ping >/dev/null 2>&1 && pg_isready -q -h 127.0.0.1 && break
  sleep 0.5
done

mysql -uroot <<'SQL'
CREATE DATABASE IF NOT EXISTS zt_test;
CREATE USER IF NOT EXISTS 'zt'@'127.0.0.1' IDENTIFIED BY 'zt-secret';
GRANT ALL PRIVILEGES ON zt_test.* TO 'zt'@'127.0.0.1';
FLUSH PRIVILEGES;
SQL

su postgres -c "psql -q -tc \"SELECT 1 FROM pg_roles WHERE rolname='zt'\"" | grep -q 1 \
  || su postgres -c "psql -q -c \"CREATE ROLE zt LOGIN PASSWORD 'zt-secret'\""
su postgres -c "psql -q -tc \"SELECT 1 FROM pg_database WHERE datname='zt_test'\"" | grep -q 1 \
  || su postgres -c "psql -q -c \"CREATE DATABASE zt_test OWNER zt\""

# Redis on its default port, no persistence.
if ! redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; then
  redis-server --bind 127.0.0.1 --port 6379 --save '' --appendonly no --daemonize yes >/dev/null
fi
echo "start-servers: mariadb, postgresql and redis are up on 127.0.0.1"
