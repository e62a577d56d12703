package netlab

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// VethReady creates a veth pair like [Lab.Veth], but assigns the addresses
// local to localName and remote to peerName while both ends are still down,
// and only then sets them up, as wg-quick and most network managers bring
// an interface: whoever waits for the interface to come up finds it with
// its addresses. Close deletes it.
func (l *Lab) VethReady(localName string, peer *Host, peerName string, local, remote []netip.Prefix) error {
	if err := l.VethDown(localName, peer, peerName, local, remote); err != nil {
		return err
	}
	if err := peer.SetUp(peerName); err != nil {
		return err
	}
	return l.Local.SetUp(localName)
}

// VethDown is VethReady without the last step: both ends stay down, so
// that the caller decides when the local end comes up.
func (l *Lab) VethDown(localName string, peer *Host, peerName string, local, remote []netip.Prefix) error {
	if err := l.addVeth(localName, peer, peerName); err != nil {
		return err
	}
	for _, p := range local {
		if err := l.Local.AddAddr(localName, p); err != nil {
			return err
		}
	}
	for _, p := range remote {
		if err := peer.AddAddr(peerName, p); err != nil {
			return err
		}
	}
	return nil
}

// addVeth creates a veth pair, both ends down, and records it for Close.
func (l *Lab) addVeth(localName string, peer *Host, peerName string) error {
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: localName},
		PeerName:      peerName,
		PeerNamespace: netlink.NsFd(int(peer.ns)),
	}
	if err := l.Local.nl.LinkAdd(veth); err != nil {
		return fmt.Errorf("netlab: add veth %s-%s: %w", localName, peerName, err)
	}
	l.mu.Lock()
	l.links = append(l.links, localName)
	l.mu.Unlock()
	return nil
}
