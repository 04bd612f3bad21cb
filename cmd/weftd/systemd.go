package main

import (
	"context"
	"log/slog"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
)

// notifyReady tells systemd (Type=notify) that weftd forwards: the TUN is
// up, the lease held and the routes in. Outside systemd it does nothing.
func notifyReady(log *slog.Logger) {
	if _, err := sd.SdNotify(false, sd.SdNotifyReady); err != nil {
		log.Warn("telling systemd weftd is ready", "err", err)
	}
}

// notifyStopping tells systemd that weftd is stopping on purpose.
func notifyStopping() { sd.SdNotify(false, sd.SdNotifyStopping) }

// watchdog pings systemd's watchdog (WatchdogSec) at half its interval
// while the forwarding loops run: alive reports that none of them has
// ended. A daemon whose loops died stops pinging, and systemd restarts it.
// Outside systemd, or without WatchdogSec, it returns at once.
func watchdog(ctx context.Context, alive func() bool, log *slog.Logger) {
	interval, err := sd.SdWatchdogEnabled(false)
	if err != nil || interval <= 0 {
		return
	}
	log.Info("pinging the systemd watchdog", "every", interval/2)
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if alive() {
				sd.SdNotify(false, sd.SdNotifyWatchdog)
			}
		}
	}
}
