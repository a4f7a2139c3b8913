"""Minimal ELF executables for the benchmark_model checks: Android builds and Linux builds."""

from __future__ import annotations

import struct

from farm.bench.binaries import EM_386, EM_AARCH64, EM_ARM, EM_X86_64

LINKER64 = "/system/bin/linker64"
LINKER = "/system/bin/linker"


def make_elf(machine: int, bits: int, interpreter: str | None, *, pad: int = 256) -> bytes:
    """A minimal little-endian ELF executable header with an optional PT_INTERP."""
    ident = b"\x7fELF" + bytes([1 if bits == 32 else 2, 1, 1, 0]) + bytes(8)
    ehsize, phentsize = (52, 32) if bits == 32 else (64, 56)
    phnum = 2 if interpreter is not None else 1
    phoff = ehsize
    interp_off = phoff + phnum * phentsize
    interp = (interpreter or "").encode() + b"\0"
    if bits == 64:
        header = ident + struct.pack(
            "<HHIQQQIHHHHHH", 2, machine, 1, 0x1000, phoff, 0, 0, ehsize, phentsize, phnum, 0, 0, 0
        )
    else:
        header = ident + struct.pack(
            "<HHIIIIIHHHHHH", 2, machine, 1, 0x1000, phoff, 0, 0, ehsize, phentsize, phnum, 0, 0, 0
        )
    assert len(header) == ehsize
    phdrs = b""
    load = (1, 0, 0, 0, 0, 0, 0)  # PT_LOAD, all zero
    entries = [(3, interp_off, len(interp))] if interpreter is not None else []
    for p_type, off, size in [*entries, (load[0], 0, 0)]:
        if bits == 64:
            phdrs += struct.pack("<IIQQQQQQ", p_type, 4, off, 0, 0, size, size, 1)
        else:
            phdrs += struct.pack("<IIIIIIII", p_type, off, 0, 0, size, size, 4, 1)
    body = header + phdrs + (interp if interpreter is not None else b"")
    return body + bytes(pad)


ANDROID_BUILDS = {
    "arm64-v8a": make_elf(EM_AARCH64, 64, LINKER64),
    "armeabi-v7a": make_elf(EM_ARM, 32, LINKER),
    "x86_64": make_elf(EM_X86_64, 64, LINKER64),
    "x86": make_elf(EM_386, 32, LINKER),
}
