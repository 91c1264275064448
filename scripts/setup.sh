#!/usr/bin/env bash
# Installs everything Sync or Swim needs on a Debian/Ubuntu machine: the database server
# binaries (only when missing) and .venv with the project and its dev tools.
# Idempotent: a second run only checks. Never starts or touches the machine's own database
# services: the sandbox and the tests run private servers from these binaries.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "setup: $*"; }

# --- database server binaries ----------------------------------------------------------------
have_pg() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/postgres" ] && [ -x "$d/initdb" ] && return 0
  done
  command -v postgres >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1
}
have_any() {  # a binary on PATH or in /usr/sbin (not on a normal user's PATH)
  local n
  for n in "$@"; do
    command -v "$n" >/dev/null 2>&1 && return 0
    [ -x "/usr/sbin/$n" ] && return 0
  done
  return 1
}

need_pkgs=()
have_pg || need_pkgs+=(postgresql)
if ! have_any mariadbd mysqld || ! have_any mariadb-install-db mysql_install_db; then
  need_pkgs+=(mariadb-server)
fi

if [ ${#need_pkgs[@]} -gt 0 ]; then
  say "installing database server binaries: ${need_pkgs[*]}"
  if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
  elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo -n)  # never wait for a password: CI has no terminal
  else
    echo "setup: need root (or sudo) to install ${need_pkgs[*]}; install them and run again" >&2
    exit 1
  fi
  command -v apt-get >/dev/null 2>&1 || {
    echo "setup: no apt-get here: install PostgreSQL 15+ and MariaDB 10.6+ server binaries" >&2
    exit 1
  }
  # The packages would start their own services (ports 5432/3306), which are not ours:
  # policy-rc.d answering 101 forbids that. An existing policy is the machine's; keep it.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    trap '"${SUDO[@]}" rm -f "$policy"' EXIT
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
    "${SUDO[@]}" chmod 755 "$policy"
  fi
  "${SUDO[@]}" apt-get update -qq
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" </dev/null
  have_pg || { echo "setup: PostgreSQL server binaries still missing" >&2; exit 1; }
  have_any mariadbd mysqld || { echo "setup: MariaDB server binary still missing" >&2; exit 1; }
fi

# --- Python environment ----------------------------------------------------------------------
PY="${PYTHON:-python3}"
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "setup: Python 3.11+ needed; '$PY' is $("$PY" --version 2>&1 || echo missing)." \
    "Set PYTHON=/path/to/python3.11 and run again" >&2
  exit 1
fi
if ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
  say "creating .venv"
  rm -rf .venv  # a half-made venv (no pip) would fail every later step
  "$PY" -m venv .venv || {
    echo "setup: '$PY -m venv' failed; on Debian/Ubuntu install the python3-venv package" >&2
    exit 1
  }
fi
stamp=.venv/.syncswim-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] \
  || [ ! -x .venv/bin/syncswim ] || [ ! -x .venv/bin/pytest ]; then
  say "installing the project and its dependencies into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]' </dev/null
  touch "$stamp"
fi
say "ready"
