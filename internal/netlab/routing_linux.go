package netlab

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Rule is a policy routing rule (ip rule): route lookups that match it use
// Table instead of the main table. With Oif set it matches lookups whose
// output interface is already fixed to Oif, as for a socket bound to it;
// with Src set, lookups for packets from those source addresses.
type Rule struct {
	IPv6     bool
	Oif      string
	Src      netip.Prefix
	Table    int
	Priority int
}

// AddRule adds r to h's policy routing rules; the lab removes it when it
// closes h, since rules outlive the interface they name.
func (h *Host) AddRule(r Rule) error {
	rule := netlink.NewRule()
	rule.Family = unix.AF_INET
	if r.IPv6 {
		rule.Family = unix.AF_INET6
	}
	rule.OifName = r.Oif
	if r.Src.IsValid() {
		rule.Src = ipNet(r.Src)
	}
	rule.Table = r.Table
	rule.Priority = r.Priority
	if err := h.nl.RuleAdd(rule); err != nil {
		return fmt.Errorf("netlab: %s: add rule %+v: %w", h.Name, r, err)
	}
	h.onClose(func() { _ = h.nl.RuleDel(rule) })
	return nil
}

// AddTableRoute adds r to h's routing table number table, for use with
// [Host.AddRule].
func (h *Host) AddTableRoute(table int, r Route) error {
	link, err := h.nl.LinkByName(r.Dev)
	if err != nil {
		return fmt.Errorf("netlab: %s: find %s: %w", h.Name, r.Dev, err)
	}
	route := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: ipNet(r.Dst), Priority: r.Metric, Table: table}
	if r.Gateway.IsValid() {
		route.Gw = r.Gateway.AsSlice()
	}
	if err := h.nl.RouteAdd(route); err != nil {
		return fmt.Errorf("netlab: %s: add route %+v to table %d: %w", h.Name, r, table, err)
	}
	return nil
}

// RenameLink renames h's interface from old to name. The interface must be
// down, as the kernel refuses to rename a running one.
func (h *Host) RenameLink(old, name string) error {
	link, err := h.nl.LinkByName(old)
	if err != nil {
		return fmt.Errorf("netlab: %s: find %s: %w", h.Name, old, err)
	}
	if err := h.nl.LinkSetName(link, name); err != nil {
		return fmt.Errorf("netlab: %s: rename %s to %q: %w", h.Name, old, name, err)
	}
	return nil
}

// LinkName returns the name of h's interface with the given index.
func (h *Host) LinkName(index int) (string, error) {
	link, err := h.nl.LinkByIndex(index)
	if err != nil {
		return "", fmt.Errorf("netlab: %s: find interface %d: %w", h.Name, index, err)
	}
	return link.Attrs().Name, nil
}

// AddAltName gives h's interface name the alternative name alt (ip link
// property add altname); the kernel removes it with the interface.
func (h *Host) AddAltName(name, alt string) error {
	link, err := h.nl.LinkByName(name)
	if err != nil {
		return fmt.Errorf("netlab: %s: find %s: %w", h.Name, name, err)
	}
	if err := h.nl.LinkAddAltName(link, alt); err != nil {
		return fmt.Errorf("netlab: %s: add altname %q to %s: %w", h.Name, alt, name, err)
	}
	return nil
}
