#!/usr/bin/env bash
# Build the desktop app (unless --no-build) and check that the frozen app works, as a user would
# run it, with a fresh home folder: the window offscreen on the bundled samples (a screenshot
# with the mask drawn), the command line (info, predict), nothing written into the installation,
# a missing system library reported in words. Prints the size, and the time from launch to the
# first mask against the virtual environment's (median of 3, alternating).
#
#   bash installer/check_frozen.sh [--no-build] [--out DIR]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
build=1; out="$root/build/frozen-check"
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) build=0;;
    --out) out="$2"; shift;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac; shift
done
[ "$build" = 1 ] && bash installer/build.sh
app="$root/dist/DermaSeg/DermaSeg"
[ -x "$app" ] || { echo "check: $app not found (run installer/build.sh)" >&2; exit 1; }
rm -rf "$out"; mkdir -p "$out/home"
export HOME="$out/home" XDG_CONFIG_HOME="$out/home/.config" XDG_DATA_HOME="$out/home/.local/share" \
       XDG_CACHE_HOME="$out/home/.cache" QT_QPA_PLATFORM=offscreen
unset DERMASEG_KERNEL_CACHE DERMASEG_HOME
fail() { echo "check FAILED: $*" >&2; exit 1; }
before="$out/install-before.txt"; after="$out/install-after.txt"
( cd "$root/dist/DermaSeg" && find . -type f -printf '%p %s %T@\n' | sort ) >"$before"

echo "== the window on the bundled samples, offscreen"
"$app" --screenshot "$out/window.png" >"$out/window.log" 2>&1 || { cat "$out/window.log"; fail "the window did not start"; }
[ -s "$out/window.png" ] || fail "no screenshot"
"$root/.venv/bin/python" - "$out/window.png" <<'PY' || fail "the screenshot shows no mask"
import sys, numpy as np
from PIL import Image
img = np.asarray(Image.open(sys.argv[1]).convert("RGB")).astype(int)
r, g, b = img[..., 0], img[..., 1], img[..., 2]
contour = ((r < 110) & (g > 170) & (b > 170)).sum()  # the prediction's contour (cyan) and fill
print(f"screenshot {img.shape[1]}x{img.shape[0]}, {contour} contour-coloured pixels")
sys.exit(0 if contour > 200 else 1)
PY

echo "== the command line"
"$app" --version
"$app" info >"$out/info.txt" 2>&1 || { cat "$out/info.txt"; fail "DermaSeg info"; }
head -5 "$out/info.txt"
"$app" predict "$root/resources/samples/images" --out "$out/masks" >"$out/predict.log" 2>&1 \
  || { cat "$out/predict.log"; fail "DermaSeg predict"; }
n=$(find "$out/masks" -name '*.png' | wc -l); echo "predict wrote $n masks"; [ "$n" -ge 8 ] || fail "predict wrote $n masks"
grep -i "attention\|backend" "$out/info.txt" || true

echo "== nothing written into the installation"
( cd "$root/dist/DermaSeg" && find . -type f -printf '%p %s %T@\n' | sort ) >"$after"
diff "$before" "$after" >/dev/null || { diff "$before" "$after" | head; fail "the app wrote into its installation"; }
echo "user data went to: $(cd "$out/home" && find . -maxdepth 4 -type d | grep -c .) folders under the fresh home"

# The app carries Qt's xcb libraries (libxcb-cursor & co.) itself; what it takes from the system
# is the GL stack (libGL.so.1, libEGL.so.1), libxcb.so.1 and libc: hide libGL.so.1.
echo "== a missing system library (libGL.so.1 hidden from the loader in a private mount namespace)"
lib="$(ldconfig -p | sed -n 's/.*libGL.so.1 (libc6,x86-64) => //p' | head -1)"
if [ -n "$lib" ] && [ "$(id -u)" = 0 ] && command -v unshare >/dev/null; then
  set +e
  msg="$(unshare -m sh -c "mount --bind /dev/null '$lib' && exec env -u QT_QPA_PLATFORM DISPLAY=:99 '$app'" 2>&1 </dev/null)"; rc=$?
  set -e
  echo "$msg" | grep "DermaSeg:" | tail -1
  [ $rc -ne 0 ] && echo "$msg" | grep -q "libGL.so.1.*apt-get install libgl1" \
    || fail "no message for a missing library (rc $rc)"
  [ -s "$XDG_DATA_HOME/dermaseg/startup-problem.txt" ] || fail "the problem was not written to the user's folder"
else
  echo "skipped: needs root, unshare and libGL.so.1 installed"
fi

echo "== size and start-up time"
echo "app folder: $(du -sm "$root/dist/DermaSeg" | cut -f1) MB; tarball: $(du -sm "$root"/dist/DermaSeg-*.tar.gz 2>/dev/null | cut -f1 | head -1) MB"
"$root/.venv/bin/python" "$root/installer/time_first_mask.py" --frozen "$app" --venv "$root/.venv/bin/dermaseg" \
  --runs 3 --out "$out"
echo "check passed ($out)"
