#!/usr/bin/env bash
# Add DermaSeg to the desktop's application menu (for this user), pointing at this unpacked folder.
#   ./install-desktop-entry.sh          # from the unpacked DermaSeg folder
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
apps="${XDG_DATA_HOME:-$HOME/.local/share}/applications"
mkdir -p "$apps"
icon="$here/_internal/resources/icons/dermaseg.png"
sed -e "s|^Exec=.*|Exec=\"$here/DermaSeg\" %F|" -e "s|^Icon=.*|Icon=$icon|" -e "s|^TryExec=.*|TryExec=$here/DermaSeg|" \
  "$here/dermaseg.desktop" >"$apps/dermaseg.desktop.tmp"
mv "$apps/dermaseg.desktop.tmp" "$apps/dermaseg.desktop"
command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database "$apps" >/dev/null 2>&1 || true
echo "DermaSeg added to the application menu ($apps/dermaseg.desktop)"
