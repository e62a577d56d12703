package netlab

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// DNSConfig says how a [DNSServer] answers.
type DNSConfig struct {
	// Records maps fully qualified names ("svc.lab.test.") to the
	// addresses of their A and AAAA answers. Other names get NXDOMAIN.
	Records map[string][]netip.Addr
	// TruncateUDP answers every UDP query with an empty answer whose TC
	// bit is set, so that a client must ask again over TCP.
	TruncateUDP bool
	// RCode, when not RCodeSuccess, answers every query with that code
	// and no records.
	RCode dnsmessage.RCode
	// Silent records queries and answers none.
	Silent bool
}

// DNSQuery is a query a [DNSServer] received.
type DNSQuery struct {
	Network string         // "udp" or "tcp"
	From    netip.AddrPort // the client's address as the server saw it
	Name    string
	Type    dnsmessage.Type
}

// DNSServer is a lab DNS server on one address and port, over UDP and
// TCP, that records every query it receives so that a test can tell which
// server a client reached, over which transport and from which address.
type DNSServer struct {
	// Addr is the address and port the server listens on, for UDP and
	// TCP alike.
	Addr netip.AddrPort

	cfg     DNSConfig
	mu      sync.Mutex
	queries []DNSQuery
}

// StartDNS starts a DNS server in h's namespace on addr; port 0 picks a
// port that is free for both UDP and TCP. It stops when the lab closes h.
func StartDNS(h *Host, addr netip.AddrPort, cfg DNSConfig) (*DNSServer, error) {
	pc, err := h.ListenPacket("udp", addr.String())
	if err != nil {
		return nil, err
	}
	h.onClose(func() { pc.Close() })
	bound := netip.MustParseAddrPort(pc.LocalAddr().String())
	ln, err := h.Listen("tcp", netip.AddrPortFrom(addr.Addr(), bound.Port()).String())
	if err != nil {
		return nil, err
	}
	h.onClose(func() { ln.Close() })
	s := &DNSServer{Addr: netip.AddrPortFrom(addr.Addr(), bound.Port()), cfg: cfg}
	go s.serveUDP(pc)
	go s.serveTCP(ln)
	return s, nil
}

// Queries returns the queries received so far, oldest first.
func (s *DNSServer) Queries() []DNSQuery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.queries)
}

// Count returns how many queries arrived over network ("udp" or "tcp").
func (s *DNSServer) Count(network string) int {
	n := 0
	for _, q := range s.Queries() {
		if q.Network == network {
			n++
		}
	}
	return n
}

func (s *DNSServer) String() string { return fmt.Sprintf("DNS server %s", s.Addr) }

func (s *DNSServer) serveUDP(pc net.PacketConn) {
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		if reply, ok := s.reply("udp", from, buf[:n]); ok {
			_, _ = pc.WriteTo(reply, from)
		}
	}
}

func (s *DNSServer) serveTCP(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(dialTimeout))
			for {
				var size [2]byte
				if _, err := io.ReadFull(c, size[:]); err != nil {
					return
				}
				query := make([]byte, binary.BigEndian.Uint16(size[:]))
				if _, err := io.ReadFull(c, query); err != nil {
					return
				}
				reply, ok := s.reply("tcp", c.RemoteAddr(), query)
				if !ok {
					continue
				}
				framed := binary.BigEndian.AppendUint16(nil, uint16(len(reply)))
				if _, err := c.Write(append(framed, reply...)); err != nil {
					return
				}
			}
		}()
	}
}

// reply records query and builds the answer the configuration asks for.
func (s *DNSServer) reply(network string, from net.Addr, query []byte) ([]byte, bool) {
	var p dnsmessage.Parser
	hdr, err := p.Start(query)
	if err != nil {
		return nil, false
	}
	q, err := p.Question()
	if err != nil {
		return nil, false
	}
	src, _ := netip.ParseAddrPort(from.String())
	s.mu.Lock()
	s.queries = append(s.queries, DNSQuery{Network: network, From: src, Name: q.Name.String(), Type: q.Type})
	s.mu.Unlock()
	if s.cfg.Silent {
		return nil, false
	}
	truncate := s.cfg.TruncateUDP && network == "udp"
	if s.cfg.RCode == dnsmessage.RCodeSuccess && !truncate {
		return answer(query, s.cfg.Records)
	}
	reply := dnsmessage.Message{
		Header: dnsmessage.Header{
			ID: hdr.ID, Response: true, Authoritative: true,
			RecursionDesired: hdr.RecursionDesired, RCode: s.cfg.RCode,
			Truncated: s.cfg.RCode == dnsmessage.RCodeSuccess,
		},
		Questions: []dnsmessage.Question{q},
	}
	out, err := reply.Pack()
	return out, err == nil
}
