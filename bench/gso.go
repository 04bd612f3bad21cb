package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
)

// Values of --underlay-gso: whether the underlay veths segment UDP GSO
// super-datagrams themselves, as a NIC with UDP segmentation offload does,
// or leave it to the kernel's software GSO before the device, as on a NIC
// without it. On veth "on" is a shortcut real hardware does not take: the
// super-datagram crosses to the peer whole and is never cut at all.
const (
	UnderlayGSOOn   = "on"
	UnderlayGSOOff  = "off"
	UnderlayGSOBoth = "both" // every mode the setting can change runs both ways
)

// UnderlayGSOOffSuffix ends the name of a row measured with the underlay's
// UDP segmentation off when a run has both settings: "weft (underlay-gso off)".
const UnderlayGSOOffSuffix = " (underlay-gso off)"

// udpSegFeature is ethtool's name for NETIF_F_GSO_UDP_L4 on transmit.
const udpSegFeature = "tx-udp-segmentation"

// CheckUnderlayGSO returns an error unless s is a value of --underlay-gso.
func CheckUnderlayGSO(s string) error {
	switch s {
	case UnderlayGSOOn, UnderlayGSOOff, UnderlayGSOBoth:
		return nil
	}
	return fmt.Errorf("underlay GSO %q: want %s, %s or %s", s, UnderlayGSOOn, UnderlayGSOOff, UnderlayGSOBoth)
}

// ethtoolFeature returns the state of feature in `ethtool -k` output, whose
// lines read "tx-udp-segmentation: off [fixed]" or "...: on [requested off]".
func ethtoolFeature(out []byte, feature string) (on bool, err error) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		if !ok || k != feature {
			continue
		}
		switch f := strings.Fields(v); {
		case len(f) > 0 && f[0] == "on":
			return true, nil
		case len(f) > 0 && f[0] == "off":
			return false, nil
		}
		return false, fmt.Errorf("ethtool: %s: unexpected state %q", feature, strings.TrimSpace(v))
	}
	return false, fmt.Errorf("ethtool: no feature %s in its output", feature)
}
