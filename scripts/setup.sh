#!/usr/bin/env bash
# One-time set-up on a fresh machine: Debian's Fashion-MNIST, a .venv with torch and every extra.
# Idempotent: re-running only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null 2>&1; then
  echo "setup: installing Debian's dataset-fashion-mnist"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || {
    $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null
  } || echo "setup: could not install dataset-fashion-mnist; mnv3 will look in --data-dir or download it"
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
fi

STAMP=.venv/.mnv3-installed
if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ] || [ scripts/setup.sh -nt "$STAMP" ]; then
  case "$(uname -m)" in
    aarch64) TORCH="torch==2.9.1 torchvision==0.24.1" ;;
    *) TORCH="torch==2.14.1 torchvision==0.29.1" ;;  # from the local disk on this machine kind
  esac
  echo "setup: installing $TORCH"
  .venv/bin/pip install -q $TORCH
  echo "setup: installing mnv3 with its extras"
  .venv/bin/pip install -q -e ".[train,export,interop,detection,test,executorch,litert,search]"
  touch "$STAMP"
fi
echo "setup: ready (.venv)"
