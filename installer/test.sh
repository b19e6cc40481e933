#!/usr/bin/env bash
# Run the test suite (installs what it needs on first use). Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/installer/bootstrap.sh"
venv="${DERMASEG_VENV:-$root/.venv}"
cd "$root"
export QT_QPA_PLATFORM="${QT_QPA_PLATFORM:-offscreen}"
exec "$venv/bin/python" -m pytest "$@"
