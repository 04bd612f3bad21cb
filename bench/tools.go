package bench

// HarnessTools are the programs a full `weft bench` run needs (bridge sets
// the VXLAN mode's static FDB).
var HarnessTools = []string{"ip", "bridge", "ping", "iperf3"}

// ToolsFor lists the programs a run with the given --underlay-gso setting
// needs: HarnessTools, and ethtool when the underlay's UDP segmentation is
// turned off.
func ToolsFor(underlayGSO string) []string {
	tools := append([]string(nil), HarnessTools...)
	if underlayGSO != "" && underlayGSO != UnderlayGSOOn {
		tools = append(tools, "ethtool")
	}
	return tools
}
