#!/usr/bin/env bash
# Installs everything Sync or Swim needs on a fresh Debian/Ubuntu machine:
# the database server binaries (when missing) and a virtual environment with the project.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
have_pg=""
for d in /usr/lib/postgresql/*/bin; do [ -x "$d/postgres" ] && have_pg=1; done
command -v postgres >/dev/null 2>&1 && have_pg=1
[ -n "$have_pg" ] || need_pkgs+=(postgresql)
command -v mariadbd >/dev/null 2>&1 || command -v mysqld >/dev/null 2>&1 || need_pkgs+=(mariadb-server)
command -v mariadb-install-db >/dev/null 2>&1 || command -v mysql_install_db >/dev/null 2>&1 || need_pkgs+=(mariadb-server)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "setup: installing database server binaries: ${need_pkgs[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  # The packages' own services are not ours: we only want the binaries, so do not start them.
  echo 'exit 101' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null; $SUDO chmod +x /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}"
  $SUDO rm -f /usr/sbin/policy-rc.d
fi

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.syncswim-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing the project and its dependencies into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
  touch "$stamp"
fi
echo "setup: ready"
