# Qt's system libraries: which are missing, and the Debian/Ubuntu packages that hold them.
# Sourced by bootstrap.sh and start.sh (bash). No pipes: `ldconfig -p | grep -q` under
# `set -o pipefail` reports a present library as missing when grep exits early (SIGPIPE).
#
#   dermaseg_missing_qt_libs       prints "soname package" per missing library (nothing when all
#                                  are there, or when ldconfig cannot be run)
#   dermaseg_missing_qt_packages   prints the packages to install, space separated

# soname -> package: what the offscreen and xcb platform plugins (PySide6 6.x) load, from
# `ldd libqxcb.so libQt6XcbQpa.so.6` on a bare Debian 12
DERMASEG_QT_LIBS=(
  "libGL.so.1 libgl1"
  "libEGL.so.1 libegl1"
  "libfontconfig.so.1 libfontconfig1"
  "libdbus-1.so.3 libdbus-1-3"
  "libxkbcommon.so.0 libxkbcommon0"
  "libxkbcommon-x11.so.0 libxkbcommon-x11-0"
  "libX11.so.6 libx11-6"
  "libX11-xcb.so.1 libx11-xcb1"
  "libxcb.so.1 libxcb1"
  "libxcb-cursor.so.0 libxcb-cursor0"
  "libxcb-icccm.so.4 libxcb-icccm4"
  "libxcb-image.so.0 libxcb-image0"
  "libxcb-keysyms.so.1 libxcb-keysyms1"
  "libxcb-randr.so.0 libxcb-randr0"
  "libxcb-render.so.0 libxcb-render0"
  "libxcb-render-util.so.0 libxcb-render-util0"
  "libxcb-shape.so.0 libxcb-shape0"
  "libxcb-shm.so.0 libxcb-shm0"
  "libxcb-sync.so.1 libxcb-sync1"
  "libxcb-util.so.1 libxcb-util1"
  "libxcb-xfixes.so.0 libxcb-xfixes0"
  "libxcb-xkb.so.1 libxcb-xkb1"
)

_dermaseg_ldconfig() {
  if [ -n "${DERMASEG_LDCONFIG:-}" ]; then echo "$DERMASEG_LDCONFIG"; return; fi
  command -v ldconfig 2>/dev/null && return
  for c in /sbin/ldconfig /usr/sbin/ldconfig; do
    if [ -x "$c" ]; then echo "$c"; return; fi
  done
}

dermaseg_missing_qt_libs() {
  local ldc listing name rest entry lib pkg
  ldc="$(_dermaseg_ldconfig)"
  [ -n "$ldc" ] || return 0
  listing="$("$ldc" -p 2>/dev/null)" || return 0  # read whole, then looked up: no SIGPIPE
  declare -A have=()
  while read -r name rest; do
    [ -n "$name" ] && have["$name"]=1
  done <<<"$listing"
  for entry in "${DERMASEG_QT_LIBS[@]}"; do
    lib="${entry%% *}"
    pkg="${entry#* }"
    [ -n "${have[$lib]:-}" ] || echo "$lib $pkg"
  done
}

dermaseg_missing_qt_packages() {
  local line pkgs=()
  while read -r line; do
    [ -n "$line" ] && pkgs+=("${line#* }")
  done <<<"$(dermaseg_missing_qt_libs)"
  echo "${pkgs[*]}"
}
