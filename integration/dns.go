package integration

import (
	"time"

	"github.com/bindtodev/bindtodev"
	"github.com/miekg/dns"
)

// DNSClient returns a miekg/dns client whose queries leave through d, over
// network ("udp", "tcp" or "tcp-tls"). With Client.Dialer set, miekg/dns
// dials with that Dialer's Timeout and ignores Client.Timeout and
// DialTimeout for the dial, so timeout goes on d's copy before NetDialer
// makes the bound *net.Dialer; Client.Timeout still bounds the exchange.
func DNSClient(d *bindtodev.Dialer, network string, timeout time.Duration) *dns.Client {
	bound := *d
	bound.Timeout = timeout
	return &dns.Client{Net: network, Dialer: bound.NetDialer(), Timeout: timeout}
}
