#!/usr/bin/env python3
"""Pushes a directory as a one-layer OCI image (gzip tar layer) to a
plain-HTTP registry: the baseline image that containerd's overlayfs
snapshotter pulls in full.

    push_oci_dir.py HOST:PORT REPO TAG DIR
Prints the size of the layer blob (bytes).
"""
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from push_nydus_image import push_blob, push_manifest  # noqa: E402


def layer(root):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(dirnames) + sorted(filenames):
                full = os.path.join(dirpath, name)
                arc = os.path.relpath(full, root)
                t.add(full, arcname=arc, recursive=False)
    plain = raw.getvalue()
    return plain, gzip.compress(plain, compresslevel=6, mtime=0)


def main():
    host, repo, tag, root = sys.argv[1:5]
    base = f"http://{host}"
    plain, packed = layer(root)
    layer_digest = push_blob(base, repo, packed)
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Env": ["PATH=/usr/bin:/bin"]},
                         "rootfs": {"type": "layers",
                                    "diff_ids": ["sha256:" + hashlib.sha256(plain).hexdigest()]}
                         }).encode()
    config_digest = push_blob(base, repo, config)
    manifest = json.dumps({"schemaVersion": 2,
                           "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": config_digest, "size": len(config)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                       "digest": layer_digest, "size": len(packed)}]}).encode()
    push_manifest(base, repo, tag, manifest)
    print(len(packed))


if __name__ == "__main__":
    main()
