#!/usr/bin/env python3
"""Writes a small two-layer OCI image archive (for `ctr images import`).

    make_oci_image.py OUT.tar REF BUSYBOX

Layer 1: BUSYBOX as /bin/busybox plus /bin/sh, /bin/cat, /bin/echo links.
Layer 2: /etc/hello ("hello from layer 2"), a removal of /bin/echo
(whiteout), and /data/blob (64 KiB of a fixed pattern).
Deterministic: fixed mtimes, so the same inputs give the same digests.
"""
import gzip
import hashlib
import io
import json
import sys
import tarfile

MTIME = 1700000000


def tar_bytes(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, data, mode in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = MTIME
            ti.mode = mode
            if kind == "dir":
                ti.type = tarfile.DIRTYPE
                tf.addfile(ti)
            elif kind == "symlink":
                ti.type = tarfile.SYMTYPE
                ti.linkname = data
                tf.addfile(ti)
            else:
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def main():
    out, ref, busybox = sys.argv[1:4]
    with open(busybox, "rb") as f:
        bb = f.read()
    l1 = tar_bytes([
        ("bin", "dir", None, 0o755),
        ("bin/busybox", "file", bb, 0o755),
        ("bin/sh", "symlink", "busybox", 0o777),
        ("bin/cat", "symlink", "busybox", 0o777),
        ("bin/echo", "symlink", "busybox", 0o777),
        ("bin/ls", "symlink", "busybox", 0o777),
        ("etc", "dir", None, 0o755),
        ("tmp", "dir", None, 0o1777),
    ])
    l2 = tar_bytes([
        ("etc", "dir", None, 0o755),
        ("etc/hello", "file", b"hello from layer 2\n", 0o644),
        ("bin", "dir", None, 0o755),
        ("bin/.wh.echo", "file", b"", 0o644),
        ("data", "dir", None, 0o755),
        ("data/blob", "file", bytes(range(256)) * 256, 0o644),
    ])
    blobs = {}
    layers = []
    diff_ids = []
    for raw in (l1, l2):
        gz = gzip.compress(raw, mtime=0)
        blobs[sha(gz)] = gz
        diff_ids.append(sha(raw))
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                       "digest": sha(gz), "size": len(gz)})
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }, sort_keys=True).encode()
    blobs[sha(config)] = config
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha(config), "size": len(config)},
        "layers": layers,
    }, sort_keys=True).encode()
    blobs[sha(manifest)] = manifest
    index = json.dumps({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": sha(manifest), "size": len(manifest),
                       "annotations": {"io.containerd.image.name": ref,
                                       "org.opencontainers.image.ref.name": ref.rsplit(":", 1)[-1]}}],
    }).encode()
    files = [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", index)]
    files += [("blobs/sha256/" + d.split(":")[1], b) for d, b in blobs.items()]
    with tarfile.open(out, "w") as tf:
        for name, data in files:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mtime = MTIME
            tf.addfile(ti, io.BytesIO(data))


if __name__ == "__main__":
    main()
