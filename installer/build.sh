#!/usr/bin/env bash
# Build DermaSeg's desktop app from a clean clone: a PyInstaller one-folder app in dist/DermaSeg
# (run dist/DermaSeg/DermaSeg) and a tarball dist/DermaSeg-VERSION-linux-ARCH.tar.gz.
#
#   bash installer/build.sh            # CPU build (the project's venv, torch's CPU build)
#   DERMASEG_GPU_BUILD=1 DERMASEG_VENV=/path/to/cuda-venv bash installer/build.sh
#                                      # GPU variant: a venv whose torch is a CUDA build; CUDA
#                                      # libraries are then kept (installer/README.md)
#
# Then check the frozen app: bash installer/check_frozen.sh (the README names it).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
start=$(date +%s)
bash installer/bootstrap.sh
venv="${DERMASEG_VENV:-$root/.venv}"
py="$venv/bin/python"
"$py" -m pip --disable-pip-version-check -q install "pyinstaller>=6.10,<7" >>"$venv/bootstrap.log" 2>&1 \
  || { echo "build: installing PyInstaller failed; see $venv/bootstrap.log" >&2; exit 1; }

# The fused attention kernel for the CPUs a clinic may have (the app loads the one for its CPU;
# without any it uses PyTorch's attention, same values). Needs g++ on the build machine only.
kernels="$root/build/kernels"
rm -rf "$kernels"
if "$py" -m dermaseg_app.ml.fast_attention --isa AVX512 --isa AVX2 --out "$kernels" >"$root/build-kernels.log" 2>&1; then
  echo "build: fused attention kernels for AVX512 and AVX2 in $kernels"
else
  echo "build: the fused attention kernels could not be built (see build-kernels.log); the app will use PyTorch's attention" >&2
  rm -rf "$kernels"
fi
rm -f "$root/build-kernels.log"

rm -rf dist/DermaSeg dist/DermaSeg-*.tar.gz
DERMASEG_KERNELS_DIR="$kernels" "$venv/bin/pyinstaller" --noconfirm --log-level WARN \
  --distpath dist --workpath build/pyinstaller installer/dermaseg.spec

app="dist/DermaSeg"
cp resources/dermaseg.desktop "$app/dermaseg.desktop"
cp installer/install-desktop-entry.sh "$app/install-desktop-entry.sh"
chmod +x "$app/install-desktop-entry.sh"
version="$("$py" -c 'import dermaseg_app; print(dermaseg_app.__version__)')"
variant=""; [ "${DERMASEG_GPU_BUILD:-}" = 1 ] && variant="-gpu"
tarball="dist/DermaSeg-$version-linux-$(uname -m)$variant.tar.gz"
tar -C dist -czf "$tarball" DermaSeg
end=$(date +%s)
echo "build: $app ($(du -sm "$app" | cut -f1) MB unpacked), $tarball ($(du -sm "$tarball" | cut -f1) MB), $((end - start)) s"
