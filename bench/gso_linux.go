package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/weft-dev/weft/netlab"
)

// WithUnderlayGSO returns the rows a run measures for modes under setting:
//   - on: modes as they are; nothing is changed on the underlay;
//   - off: every mode with the underlay's UDP segmentation off, as on a NIC
//     that cannot segment UDP;
//   - both: every mode with it on, and right after each mode that sends UDP
//     GSO a second row with it off, named with UnderlayGSOOffSuffix. The other
//     modes run once: the setting is not on their path (TCP and VXLAN
//     segmentation are other offloads), and they serve as references for both.
func WithUnderlayGSO(modes []Mode, setting string) ([]Mode, error) {
	if err := CheckUnderlayGSO(setting); err != nil {
		return nil, err
	}
	if setting == UnderlayGSOOn {
		return modes, nil
	}
	var out []Mode
	for _, m := range modes {
		if setting == UnderlayGSOOff {
			m.UnderlayGSO = UnderlayGSOOff
			out = append(out, m)
			continue
		}
		on := m
		on.UnderlayGSO = UnderlayGSOOn // a row before may have turned it off
		out = append(out, on)
		if m.SendsUDPGSO {
			out = append(out, underlayGSOOff(m))
		}
	}
	return out, nil
}

// underlayGSOOff is m's row with the underlay's UDP segmentation off. Its
// daemons log into a directory of their own, so that the two rows of a mode
// keep separate logs and sockets.
func underlayGSOOff(m Mode) Mode {
	base := m
	m.Name += UnderlayGSOOffSuffix
	m.About += "; underlay UDP segmentation off"
	m.UnderlayGSO = UnderlayGSOOff
	m.Setup = func(ctx context.Context, env *Env, dp *Dataplane) error {
		sub := *env
		sub.Dir = filepath.Join(env.Dir, "underlay-gso-off")
		if err := os.MkdirAll(sub.Dir, 0o755); err != nil {
			return err
		}
		return base.Setup(ctx, &sub, dp)
	}
	return m
}

// setUnderlayGSO turns UDP segmentation offload on every host's underlay
// interface on or off (ethtool -K), and checks that the device took it.
func setUnderlayGSO(ctx context.Context, t *netlab.Topology, on bool) error {
	state := UnderlayGSOOff
	if on {
		state = UnderlayGSOOn
	}
	for _, h := range t.Hosts {
		if _, err := t.Run(ctx, h.NS, "ethtool", "-K", h.UnderlayDev, udpSegFeature, state); err != nil {
			return err
		}
		out, err := t.Run(ctx, h.NS, "ethtool", "-k", h.UnderlayDev)
		if err != nil {
			return err
		}
		got, err := ethtoolFeature(out, udpSegFeature)
		if err != nil {
			return fmt.Errorf("%s %s: %w", h.NS, h.UnderlayDev, err)
		}
		if got != on {
			return fmt.Errorf("%s %s: %s is not %s after ethtool -K (a fixed feature of the device?)", h.NS, h.UnderlayDev, udpSegFeature, state)
		}
	}
	return nil
}
