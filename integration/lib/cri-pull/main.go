// cri-pull pulls an image the way the CRI plugin (and nerdctl) do: through
// containerd's client.Pull with unpack into a given snapshotter, with the
// image-info handler wrapper that annotates every layer of a manifest with
// the containerd.io/snapshot/cri.* keys (image-ref, layer-digest,
// image-layers, manifest-digest). containerd's unpacker hands those
// annotations, with containerd.io/snapshot.ref, to the snapshotter as labels
// of each Prepare. Registries given with -plain-http are spoken to over plain
// HTTP (the integration scenarios use a loopback registry).
//
// Built offline in GOPATH mode against Debian's
// golang-github-containerd-containerd-dev (see integration/06-cri-style-pull.sh).
//
//	cri-pull -address SOCK -namespace NS -snapshotter nydus [-plain-http HOST:PORT] REF
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/images"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/pkg/snapshotters"
	"github.com/containerd/containerd/remotes/docker"
)

func main() {
	address := flag.String("address", "/run/containerd/containerd.sock", "containerd socket")
	namespace := flag.String("namespace", "k8s.io", "containerd namespace")
	snapshotter := flag.String("snapshotter", "nydus", "snapshotter to unpack into")
	plainHTTP := flag.String("plain-http", "", "registry host:port spoken to over plain HTTP")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: cri-pull [flags] REF")
		os.Exit(2)
	}
	if err := pull(*address, *namespace, *snapshotter, *plainHTTP, flag.Arg(0)); err != nil {
		fmt.Fprintln(os.Stderr, "cri-pull:", err)
		os.Exit(1)
	}
}

func pull(address, namespace, snapshotter, plainHTTP, ref string) error {
	client, err := containerd.New(address, containerd.WithTimeout(10*time.Second))
	if err != nil {
		return fmt.Errorf("connect to %s: %w", address, err)
	}
	defer client.Close()

	ctx := namespaces.WithNamespace(context.Background(), namespace)
	// The pull holds a lease so that nothing it fetched is collected before
	// the image record exists; the image then keeps its content alive.
	ctx, done, err := client.WithLease(ctx)
	if err != nil {
		return fmt.Errorf("lease: %w", err)
	}
	defer done(ctx)

	hostOpts := docker.ConfigureDefaultRegistries()
	if plainHTTP != "" {
		hostOpts = docker.ConfigureDefaultRegistries(docker.WithPlainHTTP(func(host string) (bool, error) {
			return host == plainHTTP, nil
		}))
	}
	resolver := docker.NewResolver(docker.ResolverOptions{Hosts: hostOpts})

	start := time.Now()
	img, err := client.Pull(ctx, ref,
		containerd.WithResolver(resolver),
		containerd.WithPullUnpack,
		containerd.WithPullSnapshotter(snapshotter),
		containerd.WithMaxConcurrentDownloads(3),
		// What the CRI plugin does when snapshot annotations are enabled
		// (and what nerdctl does for remote snapshotters).
		containerd.WithImageHandlerWrapper(snapshotters.AppendInfoHandlerWrapper(ref)),
		containerd.WithPullLabels(map[string]string{"io.cri-containerd.image": "managed"}),
	)
	if err != nil {
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	manifest, err := images.Manifest(ctx, client.ContentStore(), img.Target(), img.Platform())
	if err != nil {
		return fmt.Errorf("read manifest of %s: %w", ref, err)
	}
	fmt.Printf("pulled %s %s: %d layers unpacked into %s in %s\n", img.Name(), img.Target().Digest,
		len(manifest.Layers), snapshotter, time.Since(start).Round(time.Millisecond))
	return nil
}
