package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/weft-dev/weft/forward"
	"github.com/weft-dev/weft/masq"
)

// setupFirewall puts weft's rules into this host's nftables, as flanneld
// does with iptables: the masquerade rules with --ip-masq (package masq),
// the FORWARD accept rules with --iptables-forward-rules (package forward).
// It checks them every --iptables-resync until ctx ends and repairs what a
// firewall reload or "nft flush ruleset" took away.
//
// The rules outlive weftd, as flanneld's do: a restart must never let pods
// egress unmasqueraded, nor drop their forwarded traffic. A weftd started
// without one of the two flags removes weft's rules of that kind; weftd
// --cleanup removes both. An error means the masquerade rules could not be
// installed and weftd must not run; the FORWARD rules, as flanneld's, are
// tried again at every check, with the failure logged.
func setupFirewall(ctx context.Context, cfg *config, network, subnet netip.Prefix, log *slog.Logger) error {
	var table *masq.Table
	if cfg.ipMasq {
		var opts []masq.Option
		if !cfg.masqFullyRandom {
			opts = append(opts, masq.PlainMasquerade())
		}
		var err error
		if table, err = masq.New(network, subnet, opts...); err != nil {
			return fmt.Errorf("--ip-masq: %w", err)
		}
		if err := table.Install(); err != nil {
			return fmt.Errorf("--ip-masq: %w (weftd needs CAP_NET_ADMIN and a kernel with nf_tables, its nat chains and masquerade: CONFIG_NF_TABLES, CONFIG_NFT_NAT, CONFIG_NFT_MASQ)", err)
		}
		log.Info("masquerading pod traffic that leaves the overlay", "nftables", "table ip "+masq.TableName,
			"network", network, "subnet", subnet, "fully_random", cfg.masqFullyRandom)
	} else if err := masq.RemoveTable(0); err != nil {
		log.Warn("removing the masquerade rules of an earlier weftd --ip-masq", "err", err)
	}
	var fwd *forward.Rules
	if cfg.forwardRules {
		var err error
		if fwd, err = forward.New(network); err != nil {
			return fmt.Errorf("--iptables-forward-rules: %w", err)
		}
	} else if n, err := forward.Remove(0); err != nil {
		log.Warn("removing the FORWARD accept rules of an earlier weftd", "err", err)
	} else if n > 0 {
		log.Info("removed weft's FORWARD accept rules (--iptables-forward-rules=false)", "rules", n)
	}
	if table == nil && fwd == nil {
		return nil
	}
	fw := &firewall{masq: table, fwd: fwd, log: log}
	fw.check(true)
	go func() {
		tick := time.NewTicker(cfg.firewallResync)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				fw.check(false)
			}
		}
	}()
	return nil
}

// firewall checks weft's rules; a lasting failure is logged once, not at
// every check.
type firewall struct {
	masq            *masq.Table
	fwd             *forward.Rules
	log             *slog.Logger
	repairs         int
	masqErr         string
	fwdErr, fwdWarn string
}

func (f *firewall) check(first bool) {
	if f.masq != nil && !first { // Install just made it
		fault, err := f.masq.Check()
		switch {
		case err != nil:
			if err.Error() != f.masqErr {
				f.log.Error("checking the masquerade rules", "found", fault, "err", err)
			}
			f.masqErr = err.Error()
		case fault != "":
			f.masqErr = ""
			f.repairs++
			f.log.Warn("masquerade rules were changed outside weftd; reinstalled them", "found", fault, "repairs", f.repairs)
		default:
			f.masqErr = ""
		}
	}
	if f.fwd == nil {
		return
	}
	fault, warning, err := f.fwd.Ensure()
	if warning != "" && warning != f.fwdWarn {
		f.log.Warn("FORWARD accept rules", "warning", warning)
	}
	f.fwdWarn = warning
	switch {
	case err != nil:
		if err.Error() != f.fwdErr {
			f.log.Error("checking the FORWARD accept rules; trying again at the next check", "found", fault, "err", err)
		}
		f.fwdErr = err.Error()
	case first && fault != "":
		f.fwdErr = ""
		f.log.Info("accepting overlay traffic in iptables' FORWARD chain", "nftables", "table ip "+forward.TableName+" chain "+forward.ChainName, "comment", forward.Comment)
	case fault != "":
		f.fwdErr = ""
		f.repairs++
		f.log.Warn("FORWARD accept rules were changed outside weftd, or the chain appeared; put them back", "found", fault, "repairs", f.repairs)
	default:
		f.fwdErr = ""
	}
}

// cleanupFirewall is weftd --cleanup: it removes weft's masquerade table
// and its FORWARD accept rules from this host's nftables, touching nothing
// else, and says what it did.
func cleanupFirewall(log *slog.Logger) error {
	err1 := masq.RemoveTable(0)
	if err1 == nil {
		log.Info("removed weft's masquerade rules, if there were any", "nftables", "table ip "+masq.TableName)
	}
	n, err2 := forward.Remove(0)
	if err2 == nil {
		log.Info("removed weft's FORWARD accept rules", "rules", n)
	}
	return errors.Join(err1, err2)
}
