package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/weft-dev/weft/masq"
)

// masqCheckInterval is how often weftd makes sure its masquerade rules are
// still there: a firewall reload or an "nft flush ruleset" drops them, and
// pods would then reach the outside world with their overlay addresses.
const masqCheckInterval = 10 * time.Second

// startMasq installs weft's masquerade rules (--ip-masq) for the overlay
// network and this host's subnet, and checks them every masqCheckInterval
// until ctx ends, reinstalling them if they were changed. The function it
// returns stops the checks and removes the rules; weftd defers it. An
// error means the rules could not be installed and weftd must not run.
func startMasq(ctx context.Context, network, subnet netip.Prefix, log *slog.Logger) (func(), error) {
	table, err := masq.New(network, subnet)
	if err != nil {
		return nil, fmt.Errorf("--ip-masq: %w", err)
	}
	if err := table.Install(); err != nil {
		return nil, fmt.Errorf("--ip-masq: %w (weftd needs CAP_NET_ADMIN and a kernel with nf_tables, its nat chains and masquerade: CONFIG_NF_TABLES, CONFIG_NFT_NAT, CONFIG_NFT_MASQ)", err)
	}
	log.Info("masquerading pod traffic that leaves the overlay", "nftables", "table ip "+masq.TableName, "network", network, "subnet", subnet)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(masqCheckInterval)
		defer tick.Stop()
		var repairs int
		var lastErr string // a lasting failure is logged once, not every tick
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			fault, err := table.Check()
			if err != nil {
				if err.Error() != lastErr {
					log.Error("checking the masquerade rules", "found", fault, "err", err)
				}
				lastErr = err.Error()
				continue
			}
			lastErr = ""
			if fault != "" {
				repairs++
				log.Warn("masquerade rules were changed outside weftd; reinstalled them", "found", fault, "repairs", repairs)
			}
		}
	}()
	return func() {
		cancel()
		<-done
		if err := table.Remove(); err != nil {
			log.Warn("removing the masquerade rules", "err", err)
			return
		}
		log.Info("masquerade rules removed", "nftables", "table ip "+masq.TableName)
	}, nil
}
