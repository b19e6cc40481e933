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

# The window needs a display. Qt's own message without one (or without a library of its xcb
# plugin) names the wrong cause, so say it plainly before starting.
platform="${QT_QPA_PLATFORM:-}"
if [ -z "$platform" ] && [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ]; then
  cat >&2 <<'MSG'
dermaseg: no display: neither DISPLAY nor WAYLAND_DISPLAY is set, so the window cannot open.
  Start it from a desktop session, or over ssh with `ssh -X`; on a machine without a screen use
  `xvfb-run -a installer/start.sh` (apt-get install xvfb), or save a picture of the window with
  `QT_QPA_PLATFORM=offscreen .venv/bin/dermaseg PATH --screenshot FILE`.
  The command-line tools (dermaseg predict, evaluate, export, ...) need no display.
MSG
  exit 1
fi
if [ -z "$platform" ] || [ "${platform%%:*}" = xcb ]; then
  if [ -n "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ]; then
    # shellcheck source=qt_libs.sh
    source "$root/installer/qt_libs.sh"
    missing="$(dermaseg_missing_qt_libs)"
    if [ -n "$missing" ]; then
      echo "dermaseg: Qt's X11 (xcb) platform cannot start: missing $(cut -d' ' -f1 <<<"$missing" | tr '\n' ' ')" >&2
      echo "dermaseg: install them with: sudo apt-get install $(dermaseg_missing_qt_packages)" >&2
      exit 1
    fi
  fi
fi
exec "$venv/bin/dermaseg" "$@"
