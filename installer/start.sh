#!/usr/bin/env bash
# Launch DermaSeg's review window on the bundled sample images with the bundled model
# (installs on first use). Extra arguments replace the samples: installer/start.sh ~/my-images
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/installer/bootstrap.sh"
venv="${DERMASEG_VENV:-$root/.venv}"
if [ $# -eq 0 ]; then
  set -- "$root/resources/samples/images"
fi
exec "$venv/bin/dermaseg" "$@"
