#!/usr/bin/env bash
# The test command: set up (Debian daemons, venv), lint, type-check, then run the whole suite.
# The tests start the real daemons they talk to (mosquitto, telnetd, vsftpd, snmpd, libcoap,
# nginx, openssl s_server) as child processes on 127.x addresses and stop them by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check probe tests bench
.venv/bin/mypy
exec .venv/bin/pytest -q -p no:cacheprovider "$@"
