// Command weftd is weft's daemon: it forwards overlay packets between the TUN
// device and the peer hosts over UDP, compatible with flannel's udp backend.
// This file only wires the packages together; each decision lives in the
// package that owns it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/weft-dev/weft/encap"
	"github.com/weft-dev/weft/engine"
	"github.com/weft-dev/weft/lease"
	"github.com/weft-dev/weft/tun"
	"github.com/weft-dev/weft/version"
)

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "weftd: %v\n", err)
		os.Exit(2)
	}
	if cfg.version {
		fmt.Println(version.Line("weftd"))
		return
	}
	// SIGHUP reopens the log file; it never ends the daemon.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	var out io.Writer = os.Stderr
	var lf *logFile
	if cfg.logFile != "" {
		if lf, err = openLogFile(cfg.logFile); err != nil {
			fmt.Fprintf(os.Stderr, "weftd: %v\n", err)
			os.Exit(2)
		}
		out = lf
	}
	level, _ := parseLogLevel(cfg.logLevel)
	log := slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: level}))
	go reopenOnHangup(hup, lf, log)
	if cfg.cleanup {
		if err := cleanupFirewall(log); err != nil {
			log.Error("weftd --cleanup", "err", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err = run(ctx, cfg, log)
	if err != nil {
		log.Error("weftd stopped", "err", err)
	}
	if lf != nil {
		lf.Close()
	}
	if err != nil {
		os.Exit(1)
	}
}

// reopenOnHangup reopens lf at each SIGHUP. Without a log file, logs go to
// stderr, which systemd's journal holds: there is nothing to reopen.
func reopenOnHangup(hup <-chan os.Signal, lf *logFile, log *slog.Logger) {
	for range hup {
		if lf == nil {
			log.Info("SIGHUP: logging to stderr, nothing to reopen")
			continue
		}
		if err := lf.reopen(); err != nil {
			log.Error("SIGHUP: reopening the log file; logging on in the old one", "err", err)
			continue
		}
		log.Info("SIGHUP: log file reopened", "path", lf.path)
	}
}

func run(ctx context.Context, cfg *config, log *slog.Logger) error {
	ul, err := findUnderlay(cfg)
	if err != nil {
		return err
	}
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)

	// This host's network, subnet and port: given (static mode) or leased.
	network, subnet, port := cfg.network, cfg.subnet, cfg.port
	var cl *cluster
	var km *kubeMember
	if cfg.kubeSubnetMgr {
		if km, err = joinKube(ctx, cfg, ul.publicIP, log); err != nil {
			return err
		}
		network, subnet, port = km.cfg.Network, km.subnet, int(km.cfg.Port)
	} else if !cfg.static() {
		if cl, err = joinCluster(ctx, cfg, ul.publicIP, log); err != nil {
			return err
		}
		defer func() {
			stop(nil) // end Keep and the watch before their client goes
			cl.close()
		}()
		network, subnet, port = cl.cfg.Network, cl.lease.Subnet, int(cl.cfg.Port)
		go cl.keep(ctx, stop)
	}

	mtu := ul.mtu - encap.Overhead
	kind, fallBack := cfg.tunKind()
	link, err := tun.Create(tun.Config{
		Name:     cfg.tunName,
		Queues:   cfg.workers,
		MTU:      mtu,
		Addr:     subnet.Addr(),
		Network:  network,
		Batch:    cfg.batch,
		Kind:     kind,
		FallBack: fallBack,
		Keep:     cfg.keepDevice,
		BusyPoll: cfg.busyPoll,
	})
	if err != nil {
		return err
	}
	if err := link.Refused(); err != nil {
		log.Warn("TUN offloads refused; forwarding without them", "err", err)
	}
	offload := link.Kind().Offloads()
	defer func() {
		if err := link.Close(); err != nil {
			log.Warn("removing the TUN device", "err", err)
		} else if cfg.keepDevice {
			log.Info("TUN device kept (--keep-device), with its address and route", "tun", link.Name())
		}
	}()
	if err := setupFirewall(ctx, cfg, network, subnet, log); err != nil {
		return err
	}

	ecfg := engine.Config{Subnet: subnet, BatchSize: cfg.batch, MaxPacket: mtu}
	if link.Kind() == tun.Offload {
		ecfg.ZeroCopySend, ecfg.ZeroCopyReceive = cfg.zeroCopy.send, cfg.zeroCopy.receive
	}
	eng, err := engine.New(ecfg)
	if err != nil {
		return err
	}
	table, err := engine.NewTable(cfg.peers)
	if err != nil {
		return err
	}
	eng.SetRoutes(table)
	host := &hostState{eng: eng, started: time.Now(), network: network, subnet: subnet, publicIP: ul.publicIP,
		tun: link.Name(), mtu: mtu, workers: cfg.workers, batch: cfg.batch, tunOffload: offload}
	if cl != nil {
		host.setLease(cl.leaseState)
	}
	if km != nil {
		host.setLease(km.leaseState)
	}
	ready := func() { notifyReady(log) }
	if cfg.metricsAddr != "" || cfg.healthzAddr != "" {
		mon, err := startMonitor(cfg.metricsAddr, cfg.profiles, cfg.healthzAddr, host, log)
		if err != nil {
			return err
		}
		defer mon.close()
		defer mon.setReady(false)
		ready = func() { mon.setReady(true); notifyReady(log) }
	}
	ctl, err := serveControl(cfg.controlSocket, host, log)
	if err != nil {
		return err
	}
	if ctl != nil {
		defer ctl.close()
	}

	queues := make([]engine.Queue, 0, cfg.workers)
	defer func() {
		for _, q := range queues {
			q.Conn.Close()
		}
	}()
	uopts := encap.Options{Batch: cfg.batch, GSO: offload, GRO: offload, ZeroCopy: ecfg.ZeroCopyReceive, BusyPoll: cfg.busyPoll}
	var gso, gro bool
	for i := range cfg.workers {
		conn, err := encap.ListenUDP(netip.AddrPortFrom(ul.localIP, uint16(port)), uopts)
		if err != nil {
			return err
		}
		gso, gro = conn.Offloads()
		host.addConn(conn)
		queues = append(queues, engine.Queue{Dev: link.Queues[i], Conn: conn})
	}
	if cfg.offload == "on" && (!gso || !gro) {
		return fmt.Errorf("--offload on: the kernel refused UDP segmentation (gso=%v) or receive offload (gro=%v)", gso, gro)
	}
	if cl == nil && km == nil {
		ready() // static routes are in
	} else {
		// flannel's CNI plugin reads the subnet file; write it once the
		// device is up, as flanneld does.
		sf := lease.SubnetFile{Network: network, Subnet: subnet, MTU: mtu, IPMasq: cfg.ipMasq}
		if err := lease.WriteSubnetFile(cfg.subnetFile, sf); err != nil {
			return err
		}
		// Until the first full table is in, the loops do not run: with an
		// empty one, a pod's packet to another host would be answered net
		// unreachable (a connect in SYN_SENT dies of it) and a peer's
		// datagram dropped as unknown. Unread, they wait in the TUN's queue
		// and the sockets' buffers; on a restart with --keep-device the
		// device has been queueing since this process opened it.
		tableIn := make(chan struct{})
		tableReady := func() { close(tableIn); ready() }
		if km != nil {
			go km.up(ctx)
			go km.feedRoutes(ctx, eng, tableReady)
		} else {
			go cl.feedRoutes(ctx, eng, tableReady)
		}
		select {
		case <-tableIn:
		case <-ctx.Done():
			log.Info("stopped before the first route table came", "tun", link.Name())
			if cause := context.Cause(ctx); !errors.Is(cause, context.Canceled) {
				return cause // the lease was lost
			}
			return nil
		}
	}
	log.Info("forwarding",
		"tun", link.Name(), "mtu", mtu, "subnet", subnet, "network", network,
		"underlay", ul.name, "public_ip", ul.publicIP, "port", port,
		"workers", cfg.workers, "batch", cfg.batch, "routes", eng.Routes().Len(),
		"tun_offload", offload, "tun_kind", link.Kind().String(), "zero_copy_send", ecfg.ZeroCopySend, "zero_copy_receive", ecfg.ZeroCopyReceive, "udp_gso", gso, "udp_gro", gro)
	var running atomic.Bool
	running.Store(true)
	go watchdog(ctx, running.Load, log)
	err = eng.Run(ctx, queues)
	if errors.Is(err, syscall.EBADFD) {
		// The kernel says so of a TUN queue whose device was deleted.
		err = fmt.Errorf("the TUN device %s was deleted from outside; stopping (systemd restarts weftd): %w", link.Name(), err)
	}
	running.Store(false)
	notifyStopping()
	log.Info("shutting down", "tun", link.Name())
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause // the lease was lost
	}
	return err
}

func parseLogLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}
