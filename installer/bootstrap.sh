#!/usr/bin/env bash
# Create (or update) the project's virtual environment with everything DermaSeg needs.
# Idempotent and quiet when nothing changed: the quick-start commands call it on every run.
#
#   DERMASEG_VENV   where the environment lives (default: .venv in the repository)
#   DERMASEG_TORCH  the torch requirement installed first (default: torch==2.13.0, the CPU build
#                   these machines carry). On a GPU workstation, install a CUDA build into the venv
#                   yourself first (see README), and bootstrap keeps it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${DERMASEG_VENV:-$root/.venv}"
py="${PYTHON:-python3}"
log="$venv/bootstrap.log"

if [ ! -x "$venv/bin/python" ]; then
  echo "dermaseg: creating the environment in $venv (first run only, a few minutes)..." >&2
  "$py" -m venv "$venv"
fi
mkdir -p "$venv"

# Qt's offscreen/xcb platforms need a few system libraries that a bare Debian/Ubuntu lacks.
need_libs=()
for lib in libGL.so.1 libEGL.so.1 libxkbcommon.so.0 libfontconfig.so.1 libdbus-1.so.3; do
  ldconfig -p 2>/dev/null | grep -q "$lib" || need_libs+=("$lib")
done
if [ ${#need_libs[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "dermaseg: installing system libraries for Qt (${need_libs[*]})..." >&2
  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
      libgl1 libegl1 libxkbcommon0 libfontconfig1 libdbus-1-3 fonts-dejavu-core; } >>"$log" 2>&1 \
    || echo "dermaseg: could not install Qt's system libraries; see $log" >&2
fi

stamp="$venv/.dermaseg-stamp"
want="$(cat "$root/pyproject.toml" "$root/installer/bootstrap.sh" | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

echo "dermaseg: installing dependencies into $venv..." >&2
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
if ! "$venv/bin/python" -c "import torch" >/dev/null 2>&1; then
  "${pip[@]}" install "${DERMASEG_TORCH:-torch==2.13.0}" >>"$log" 2>&1 \
    || { echo "dermaseg: installing torch failed; see $log" >&2; tail -20 "$log" >&2; exit 1; }
fi
"${pip[@]}" install -e "$root[test]" >>"$log" 2>&1 \
  || { echo "dermaseg: installing DermaSeg failed; see $log" >&2; tail -20 "$log" >&2; exit 1; }
echo "$want" >"$stamp"
