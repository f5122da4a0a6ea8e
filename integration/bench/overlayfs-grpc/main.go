// overlayfs-grpc serves containerd's built-in overlayfs snapshotter over the
// snapshots gRPC API on a unix socket: the baseline our daemon is compared
// with (see BENCHMARKS.md). Built offline from Debian's containerd sources by
// ../run-bench.sh.
//
//	overlayfs-grpc -address SOCKET -root DIR
package main

import (
	"flag"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/contrib/snapshotservice"
	"github.com/containerd/containerd/snapshots/overlay"
	"google.golang.org/grpc"
)

func main() {
	address := flag.String("address", "", "unix socket to serve on")
	root := flag.String("root", "", "snapshotter root directory")
	flag.Parse()
	if *address == "" || *root == "" {
		log.Fatal("usage: overlayfs-grpc -address SOCKET -root DIR")
	}
	sn, err := overlay.NewSnapshotter(*root)
	if err != nil {
		log.Fatal(err)
	}
	os.Remove(*address)
	l, err := net.Listen("unix", *address)
	if err != nil {
		log.Fatal(err)
	}
	srv := grpc.NewServer()
	snapshotsapi.RegisterSnapshotsServer(srv, snapshotservice.FromSnapshotter(sn))
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		srv.GracefulStop()
	}()
	if err := srv.Serve(l); err != nil {
		log.Fatal(err)
	}
	sn.Close()
}
