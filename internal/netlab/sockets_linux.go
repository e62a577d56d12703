package netlab

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// TCPState is the state of a TCP socket, numbered as in the kernel
// (include/net/tcp_states.h).
type TCPState uint8

// The TCP states.
const (
	TCPEstablished TCPState = iota + 1
	TCPSynSent
	TCPSynRecv
	TCPFinWait1
	TCPFinWait2
	TCPTimeWait
	TCPClose
	TCPCloseWait
	TCPLastAck
	TCPListen
	TCPClosing
	TCPNewSynRecv
)

var tcpStateNames = [...]string{"", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2",
	"TIME_WAIT", "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV"}

// String returns the kernel's name of s.
func (s TCPState) String() string {
	if int(s) < len(tcpStateNames) && s != 0 {
		return tcpStateNames[s]
	}
	return fmt.Sprintf("state %d", uint8(s))
}

// Transient reports whether a socket in state s is opening or closing, so
// that the kernel will still send for it on its own: a handshake or a
// teardown whose last segments have not been exchanged. A closed socket
// that the kernel keeps in TIME_WAIT, or in FIN_WAIT2 waiting for the peer
// (listed with its substate), is transient in FIN_WAIT2 and settled in
// TIME_WAIT.
func (s TCPState) Transient() bool {
	switch s {
	case TCPSynSent, TCPSynRecv, TCPNewSynRecv, TCPFinWait1, TCPFinWait2, TCPClosing, TCPLastAck:
		return true
	}
	return false
}

// TCPSocket is one TCP socket of a host, as the kernel lists it in
// /proc/net/tcp and /proc/net/tcp6, TIME_WAIT sockets included.
type TCPSocket struct {
	Local, Remote netip.AddrPort
	State         TCPState
}

func (s TCPSocket) String() string {
	return fmt.Sprintf("%s -> %s %s", s.Local, s.Remote, s.State)
}

// TCPSockets lists h's TCP sockets of both families.
func (h *Host) TCPSockets() ([]TCPSocket, error) {
	var socks []TCPSocket
	err := h.Do(func() error {
		for _, file := range []string{"tcp", "tcp6"} {
			// thread-self: the thread is in h's namespace, while the
			// process's main thread may not be.
			b, err := os.ReadFile("/proc/thread-self/net/" + file)
			if err != nil {
				return err
			}
			got, err := parseProcTCP(b)
			if err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
			socks = append(socks, got...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("netlab: %s: list TCP sockets: %w", h.Name, err)
	}
	return socks, nil
}

func parseProcTCP(b []byte) ([]TCPSocket, error) {
	var socks []TCPSocket
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Scan() // header
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 {
			continue
		}
		local, err := parseProcAddr(f[1])
		if err != nil {
			return nil, err
		}
		remote, err := parseProcAddr(f[2])
		if err != nil {
			return nil, err
		}
		st, err := strconv.ParseUint(f[3], 16, 8)
		if err != nil {
			return nil, fmt.Errorf("state %q: %w", f[3], err)
		}
		socks = append(socks, TCPSocket{Local: local, Remote: remote, State: TCPState(st)})
	}
	return socks, sc.Err()
}

// parseProcAddr reads "0100007F:0050": the address as the kernel's 32-bit
// words printed in the machine's byte order, and the port.
func parseProcAddr(s string) (netip.AddrPort, error) {
	host, port, ok := strings.Cut(s, ":")
	raw, err := hex.DecodeString(host)
	if !ok || err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("address %q", s)
	}
	p, err := strconv.ParseUint(port, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("port of %q: %w", s, err)
	}
	addr := make([]byte, len(raw))
	for i := 0; i < len(raw); i += 4 {
		binary.NativeEndian.PutUint32(addr[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	a, _ := netip.AddrFromSlice(addr)
	return netip.AddrPortFrom(a.Unmap(), uint16(p)), nil
}
