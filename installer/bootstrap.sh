#!/usr/bin/env bash
# Create (or update) the project's virtual environment with everything DermaSeg needs.
# Idempotent and quiet when nothing changed: the quick-start commands call it on every run.
#
#   DERMASEG_VENV   where the environment lives (default: .venv in the repository)
#   DERMASEG_TORCH  the torch requirement installed first (default: torch==2.13.0, the CPU build
#                   these machines carry). On a GPU workstation, install a CUDA build into the venv
#                   yourself first (see README), and bootstrap keeps it.
#   DERMASEG_EXTRAS the optional extras installed where wheels exist (default "onnx openvino": the
#                   CPU inference runtimes; empty for none). One that cannot be installed is skipped.
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

# Qt's offscreen/xcb platforms need system libraries that a bare Debian/Ubuntu lacks
# (installer/qt_libs.sh: the list, and a check that reads `ldconfig -p` once, without a pipe).
# apt-get runs only for what is really missing, and a failed install is not retried at every launch.
# shellcheck source=qt_libs.sh
source "$root/installer/qt_libs.sh"
need_pkgs="$(dermaseg_missing_qt_packages)"
if [ -n "$need_pkgs" ]; then
  failed="$venv/.dermaseg-qt-libs-failed"
  # shellcheck disable=SC2086  # one word per package
  if [ -f "$failed" ] && [ "$(cat "$failed")" = "$need_pkgs" ]; then
    :  # tried before and failed: the hint below says what to do
  elif command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "dermaseg: installing system libraries for Qt ($need_pkgs)..." >&2
    if { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
           $need_pkgs fonts-dejavu-core; } >>"$log" 2>&1; then
      rm -f "$failed"
      need_pkgs="$(dermaseg_missing_qt_packages)"
    else
      echo "$need_pkgs" >"$failed"
      echo "dermaseg: could not install Qt's system libraries; see $log" >&2
    fi
  fi
  if [ -n "$need_pkgs" ]; then
    echo "dermaseg: Qt needs system libraries that are missing: $(dermaseg_missing_qt_libs | cut -d' ' -f1 | tr '\n' ' ')" >&2
    echo "dermaseg: install them with: sudo apt-get install $need_pkgs" >&2
  fi
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
# The CPU inference runtimes (ml/backends.py), one extra at a time and never fatal: where no wheel
# exists for this platform or Python, or the index cannot be reached, DermaSeg runs the model in torch.
# shellcheck disable=SC2086  # one word per extra
for extra in ${DERMASEG_EXTRAS-onnx openvino}; do
  "${pip[@]}" install -e "$root[$extra]" >>"$log" 2>&1 \
    || echo "dermaseg: the optional '$extra' runtime could not be installed (see $log); the model runs in torch without it" >&2
done
# The fused CPU attention kernel (ml/fast_attention.py), compiled once for this CPU (about a
# minute); without a C++ compiler the network uses PyTorch's attention instead, same results.
"$venv/bin/python" -m dermaseg_app.ml.fast_attention >>"$log" 2>&1 \
  || echo "dermaseg: the fast CPU attention kernel could not be built (see $log); continuing without it" >&2
echo "$want" >"$stamp"
