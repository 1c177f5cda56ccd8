#!/usr/bin/env python3
"""Writes a newc (SVR4, "070701") cpio archive, the format the kernel unpacks as an initramfs.

usage: mkinitramfs.py LIST OUT

LIST has one entry a line (blank lines and `#` comments are ignored), in the spirit of the
kernel's usr/gen_init_cpio:

    dir   PATH MODE
    file  PATH SOURCE MODE        SOURCE is relative to the current directory
    nod   PATH MODE c|b MAJOR MINOR
    slink PATH TARGET

MODE is octal permission bits. Every entry is owned by root (uid 0, gid 0) and dated 0, inode
numbers count up from 1 in list order: the same LIST and sources give the same bytes. Parent
directories must be listed before what they hold (the kernel creates entries in archive order).
"""
import os
import stat
import sys

MAGIC = b"070701"


def header(ino, mode, nlink, size, rmajor, rminor, name):
    """One newc header and the NUL-terminated name, padded to 4 bytes. Fields: ino, mode, uid,
    gid, nlink, mtime, filesize, devmajor, devminor (of the holding device: 0), rdevmajor,
    rdevminor (a device node's own numbers), namesize, check (0 in newc)."""
    fields = [ino, mode, 0, 0, nlink, 0, size, 0, 0, rmajor, rminor, len(name) + 1, 0]
    h = MAGIC + b"".join(b"%08X" % f for f in fields) + name + b"\0"
    return h + b"\0" * (-len(h) % 4)


def pad(data):
    return data + b"\0" * (-len(data) % 4)


def entries(list_path):
    with open(list_path) as f:
        for number, raw in enumerate(f, 1):
            words = raw.split("#", 1)[0].split()
            if not words:
                continue
            kind, args = words[0], words[1:]
            want = {"dir": 2, "file": 3, "nod": 5, "slink": 2}.get(kind)
            if want is None or len(args) != want:
                sys.exit(f"{list_path} line {number}: expected dir|file|nod|slink with the right fields")
            yield number, kind, args


def build(list_path):
    out = bytearray()
    seen = set()
    for ino, (number, kind, args) in enumerate(entries(list_path), 1):
        path = args[0]
        if not path.startswith("/") or path in seen:
            sys.exit(f"{list_path} line {number}: {path}: paths are absolute and listed once")
        seen.add(path)
        name = path.lstrip("/").encode() or b"."
        if kind == "dir":
            out += header(ino, stat.S_IFDIR | int(args[1], 8), 2, 0, 0, 0, name)
        elif kind == "file":
            with open(args[1], "rb") as src:
                data = src.read()
            out += header(ino, stat.S_IFREG | int(args[2], 8), 1, len(data), 0, 0, name) + pad(data)
        elif kind == "nod":
            kind_bits = {"c": stat.S_IFCHR, "b": stat.S_IFBLK}[args[2]]
            out += header(ino, kind_bits | int(args[1], 8), 1, 0, int(args[3]), int(args[4]), name)
        else:
            target = args[1].encode()
            out += header(ino, stat.S_IFLNK | 0o777, 1, len(target), 0, 0, name) + pad(target)
    out += header(0, 0, 1, 0, 0, 0, b"TRAILER!!!")
    return bytes(out + b"\0" * (-len(out) % 512))


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[2])
    data = build(sys.argv[1])
    tmp = sys.argv[2] + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, sys.argv[2])


if __name__ == "__main__":
    main()
