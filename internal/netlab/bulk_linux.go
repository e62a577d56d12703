package netlab

import (
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
)

// AddFillers adds n interfaces to h, named prefix followed by first,
// first+1, and so on, each the
// end of a veth pair whose other end lives in sink, with both ends up, so
// that h looks like a host with many interfaces: every one is listed by a
// link dump and carries an IPv6 link-local address.
//
// Fillers are never deleted one by one: deleting an interface waits for
// the kernel to quiesce, which takes milliseconds each, while a namespace
// that goes away removes all of its interfaces in one batch. Put them in
// hosts made for them with [Lab.NewHost], which vanish when the lab closes.
func (h *Host) AddFillers(sink *Host, prefix string, first, n int) error {
	for i := first; i < first+n; i++ {
		name := fmt.Sprintf("%s%d", prefix, i)
		veth := &netlink.Veth{
			LinkAttrs:     netlink.LinkAttrs{Name: name, Flags: net.FlagUp},
			PeerName:      name,
			PeerNamespace: netlink.NsFd(int(sink.ns)),
		}
		if err := h.nl.LinkAdd(veth); err != nil {
			return fmt.Errorf("netlab: %s: add filler %s: %w", h.Name, name, err)
		}
		if err := sink.nl.LinkSetUp(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: name}}); err != nil {
			return fmt.Errorf("netlab: %s: set filler %s up: %w", sink.Name, name, err)
		}
	}
	return nil
}

// Links counts h's interfaces, loopback included.
func (h *Host) Links() (int, error) {
	links, err := h.nl.LinkList()
	if err != nil {
		return 0, fmt.Errorf("netlab: %s: list interfaces: %w", h.Name, err)
	}
	return len(links), nil
}
