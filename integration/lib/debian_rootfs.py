#!/usr/bin/env python3
"""Copies the files of installed Debian packages into a directory: a small
but real Debian userland for a test or demo image (no network needed).

    debian_rootfs.py DEST PACKAGE...
Packages that are not installed are skipped (and named on stderr). Paths are
taken as they are on disk after /usr merging (a file listed as /lib/x is
copied from and to /usr/lib/x), and the merged top-level symlinks (/bin,
/lib, /lib64, /sbin -> usr/...) are recreated as on this machine.
"""
import os
import shutil
import subprocess
import sys


def main():
    dest, packages = sys.argv[1], sys.argv[2:]
    paths = set()
    for p in packages:
        r = subprocess.run(["dpkg", "-L", p], capture_output=True, text=True)
        if r.returncode != 0:
            print(f"debian_rootfs: {p} is not installed, skipped", file=sys.stderr)
            continue
        for line in r.stdout.splitlines():
            if not line.startswith("/"):
                continue
            parent = os.path.realpath(os.path.dirname(line))
            path = os.path.join(parent, os.path.basename(line))
            if os.path.islink(path) or os.path.isfile(path):
                paths.add(path)
    os.makedirs(dest, exist_ok=True)
    for top in ("bin", "lib", "lib64", "sbin"):
        src = "/" + top
        if os.path.islink(src) and not os.path.lexists(os.path.join(dest, top)):
            os.symlink(os.readlink(src), os.path.join(dest, top))
    for path in sorted(paths):
        target = dest + path
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.lexists(target):
            continue
        if os.path.islink(path):
            os.symlink(os.readlink(path), target)
        else:
            shutil.copy2(path, target)
    print(len(paths))


if __name__ == "__main__":
    main()
