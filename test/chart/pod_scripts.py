#!/usr/bin/env python3
"""Takes the scripts and probes of the chart's pod out of the rendered
objects (chart-render --json-out), for running them on a host as the kubelet
would run them in the pod (test/chart/chart_test.sh, part 5, and
integration/07-chart-pod.sh).

    pod_scripts.py DIR DAEMON_BINARY
Reads DIR/objects.json; writes DIR/keeper.sh (the fd keeper sidecar's
script), DIR/startup-probe.sh (its startup probe), DIR/daemon.sh (the
daemon container's script), DIR/readiness-url (the daemon's readiness
probe as a URL), DIR/daemon.env and DIR/configure.env (the environments
of the daemon container and of the init step, NAME=value lines for the
shell). The image's paths of the binary and of the config become
DAEMON_BINARY and DIR/config.yaml, the pod's emptyDir /run/rafs-snapshotter
becomes DIR/pod-run.
"""
import json
import shlex
import sys


def main():
    pod, daemon = sys.argv[1], sys.argv[2]
    with open(pod + "/objects.json") as f:
        objects = json.load(f)
    spec = [o for o in objects if o["kind"] == "DaemonSet"][0]["spec"]["template"]["spec"]

    def mapped(text):
        return (text.replace("/usr/local/bin/rafs-snapshotter", daemon)
                .replace("/etc/rafs-snapshotter/config.yaml", pod + "/config.yaml")
                .replace("/run/rafs-snapshotter/", pod + "/pod-run/"))

    def write_env(path, container):
        with open(path, "w") as f:
            for e in container.get("env", []):
                f.write("%s=%s\n" % (e["name"], shlex.quote(mapped(e["value"]))))

    keeper = [c for c in spec["initContainers"] if c["name"] == "fd-keeper"][0]
    main_c = [c for c in spec["containers"] if c["name"] == "rafs-snapshotter"][0]
    for c in (keeper, main_c):
        if c["command"][:2] != ["/bin/sh", "-c"] or len(c["command"]) != 3:
            sys.exit(f"pod_scripts: {c['name']}: command is not /bin/sh -c SCRIPT")
    with open(pod + "/keeper.sh", "w") as f:
        f.write(mapped(keeper["command"][2]))
    with open(pod + "/daemon.sh", "w") as f:
        f.write(mapped(main_c["command"][2]))
    with open(pod + "/startup-probe.sh", "w") as f:
        f.write(" ".join(shlex.quote(a) for a in keeper["startupProbe"]["exec"]["command"]) + "\n")
    write_env(pod + "/daemon.env", main_c)
    init = [c for c in spec.get("initContainers", []) if c["name"] == "configure-containerd"]
    if init:
        write_env(pod + "/configure.env", init[0])
    probe = main_c["readinessProbe"]["httpGet"]
    port = probe["port"]
    if isinstance(port, str):
        port = [p["containerPort"] for p in main_c["ports"] if p["name"] == port][0]
    with open(pod + "/readiness-url", "w") as f:
        f.write("http://%s:%d%s" % (probe.get("host", "127.0.0.1"), port, probe["path"]))


if __name__ == "__main__":
    main()
