#!/usr/bin/env python3
"""Pushes a RAFS image, built by `rafs build`, to a plain-HTTP registry in
the nydus layout: the data blob as a layer of media type
application/vnd.oci.image.layer.nydus.blob.v1 (annotation
containerd.io/snapshot/nydus-blob), then the bootstrap as a gzip tar layer
holding image/image.boot (annotation containerd.io/snapshot/nydus-bootstrap),
an OCI config whose diff_ids match, and an OCI manifest under the tag.

    push_nydus_image.py HOST:PORT REPO TAG BOOTSTRAP BLOB...
Prints the total size of the layers (bytes).
"""
import gzip
import hashlib
import io
import json
import sys
import tarfile
import urllib.request


def push_blob(base, repo, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    req = urllib.request.Request(f"{base}/v2/{repo}/blobs/uploads/", method="POST", data=b"")
    with urllib.request.urlopen(req) as r:
        loc = r.headers["Location"]
    if loc.startswith("/"):
        loc = base + loc
    sep = "&" if "?" in loc else "?"
    req = urllib.request.Request(f"{loc}{sep}digest={digest}", method="PUT", data=data,
                                 headers={"Content-Type": "application/octet-stream"})
    with urllib.request.urlopen(req) as r:
        if r.status not in (201, 202, 204):
            raise SystemExit(f"push blob: HTTP {r.status}")
    return digest


def push_manifest(base, repo, tag, manifest):
    req = urllib.request.Request(
        f"{base}/v2/{repo}/manifests/{tag}", method="PUT", data=manifest,
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    with urllib.request.urlopen(req) as r:
        if r.status not in (201, 202):
            raise SystemExit(f"push manifest: HTTP {r.status}")


def bootstrap_tar(boot):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
        d = tarfile.TarInfo("image")
        d.type = tarfile.DIRTYPE
        d.mode = 0o755
        t.addfile(d)
        f = tarfile.TarInfo("image/image.boot")
        f.size = len(boot)
        f.mode = 0o444
        t.addfile(f, io.BytesIO(boot))
    plain = raw.getvalue()
    return plain, gzip.compress(plain, mtime=0)


def main():
    host, repo, tag, boot_path = sys.argv[1:5]
    blob_paths = sys.argv[5:]
    base = f"http://{host}"
    layers, diff_ids, total = [], [], 0
    for p in blob_paths:
        data = open(p, "rb").read()
        digest = push_blob(base, repo, data)
        layers.append({"mediaType": "application/vnd.oci.image.layer.nydus.blob.v1",
                       "digest": digest, "size": len(data),
                       "annotations": {"containerd.io/snapshot/nydus-blob": "true"}})
        diff_ids.append(digest)
        total += len(data)
    plain, packed = bootstrap_tar(open(boot_path, "rb").read())
    digest = push_blob(base, repo, packed)
    layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                   "digest": digest, "size": len(packed),
                   "annotations": {"containerd.io/snapshot/nydus-bootstrap": "true",
                                   "containerd.io/snapshot/nydus-fs-version": "6"}})
    diff_ids.append("sha256:" + hashlib.sha256(plain).hexdigest())
    total += len(packed)
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Env": ["PATH=/bin"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    config_digest = push_blob(base, repo, config)
    manifest = json.dumps({"schemaVersion": 2,
                           "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": config_digest, "size": len(config)},
                           "layers": layers}).encode()
    push_manifest(base, repo, tag, manifest)
    print(total)


if __name__ == "__main__":
    main()
