"""Drop the static symbol table (``.symtab``/``.strtab``) and debug sections of an ELF shared
library without touching what the dynamic loader maps: the build's replacement for ``strip``.

``strip`` rewrites the whole file (binutils re-lays out the segments; on the auditwheel-patched
OpenBLAS of numpy that broke the library, and on libtorch_cpu it changes the TLS segment's size).
Here the bytes up to the end of the last segment are kept as they are (only the ELF header's
section-table fields change), the dropped sections go, the sections after them move up, and the
section table is written again. A file where the sections to drop do not all lie after every
segment (or are referenced by a kept section) is copied unchanged. The loader never reads these
sections: the dynamic symbols (``.dynsym``) it resolves with stay.

``python installer/elf_trim.py FILE...`` prints what trimming each would save.
"""

from __future__ import annotations

import shutil
import struct
import sys
from pathlib import Path

_SHT_NOBITS, _SHT_RELA, _SHT_REL = 8, 4, 9
_SHF_ALLOC, _SHF_INFO_LINK = 0x2, 0x40
_SH = struct.Struct("<IIQQQQIIQQ")  # name, type, flags, addr, offset, size, link, info, addralign, entsize
_PH = struct.Struct("<IIQQQQQQ")    # type, flags, offset, vaddr, paddr, filesz, memsz, align


def _dropped(name: str) -> bool:
    return name in (".symtab", ".strtab") or name.startswith(".debug")


def trimmed(data: bytes) -> bytes | None:
    """The file without its static symbols and debug sections, or None where there is nothing
    to drop or it cannot be done without moving mapped bytes (not a 64-bit little-endian ELF,
    sections to drop among the segments' bytes or referenced by a kept section)."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1 or len(data) < 64:
        return None
    phoff, shoff = struct.unpack_from("<QQ", data, 0x20)
    phentsize, phnum, shentsize, shnum, shstrndx = struct.unpack_from("<HHHHH", data, 0x36)
    if shentsize != _SH.size or phentsize != _PH.size or not shnum or shstrndx >= shnum:
        return None
    segments_end = phoff + phnum * phentsize
    for i in range(phnum):
        p = _PH.unpack_from(data, phoff + i * phentsize)
        segments_end = max(segments_end, p[2] + p[5])
    sections = [list(_SH.unpack_from(data, shoff + i * shentsize)) for i in range(shnum)]
    strtab = sections[shstrndx]
    names_blob = data[strtab[4]:strtab[4] + strtab[5]]
    names = [names_blob[s[0]:names_blob.index(b"\0", s[0])].decode("ascii", "replace") for s in sections]
    drop = {i for i, n in enumerate(names) if i and _dropped(n) and not sections[i][2] & _SHF_ALLOC}
    if not drop or shstrndx in drop:
        return None
    if any(sections[i][4] < segments_end for i in drop):
        return None
    cut = min(sections[i][4] for i in drop)
    new_index = {}
    for i in range(shnum):
        if i not in drop:
            new_index[i] = len(new_index)
    out = bytearray(data[:cut])
    kept = []
    for i, s in enumerate(sections):
        if i in drop:
            continue
        s = list(s)
        if s[6] in drop:
            return None  # a kept section links a dropped one (e.g. a .rela section of .symtab)
        if s[6]:
            s[6] = new_index[s[6]]
        if s[1] in (_SHT_REL, _SHT_RELA) or s[2] & _SHF_INFO_LINK:
            if s[7] in drop:
                return None
            if s[7]:
                s[7] = new_index[s[7]]
        if i and s[1] != _SHT_NOBITS and s[4] >= cut:  # after the cut: non-mapped, moves up
            if s[2] & _SHF_ALLOC:
                return None
            align = max(1, s[8])
            out += b"\0" * (-len(out) % align)
            start = s[4]
            s[4] = len(out)
            out += data[start:start + s[5]]
        kept.append(s)
    out += b"\0" * (-len(out) % 8)
    new_shoff = len(out)
    for s in kept:
        out += _SH.pack(*s)
    struct.pack_into("<Q", out, 0x28, new_shoff)
    struct.pack_into("<HH", out, 0x3C, len(kept), new_index[shstrndx])
    # what the loader maps (program headers, every segment's bytes) is the original's
    header_fields = {0x28 + k for k in range(8)} | {0x3C + k for k in range(4)}
    if any(out[k] != data[k] for k in range(64) if k not in header_fields):
        return None
    if out[64:segments_end] != data[64:segments_end]:
        return None
    return bytes(out)


def trim_copy(src: str | Path, dst: str | Path) -> int:
    """Write ``src`` trimmed to ``dst`` and return the bytes saved; 0, writing nothing, where
    there is nothing to drop or it cannot be dropped safely."""
    data = Path(src).read_bytes()
    result = trimmed(data)
    if result is None:
        return 0
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    Path(dst).write_bytes(result)
    shutil.copymode(src, dst)
    return len(data) - len(result)


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        raw = Path(arg).read_bytes()
        res = trimmed(raw)
        print(f"{arg}: {'not trimmed' if res is None else f'-{(len(raw) - len(res)) / 2**20:.1f} MB'}")
