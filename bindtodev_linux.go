//go:build !bindtodev_stub

package bindtodev

import (
	"net/netip"
	"os"

	"golang.org/x/sys/unix"
)

const supported = true

func setDevice(fd uintptr, ifname string) error {
	return os.NewSyscallError("setsockopt", unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, ifname))
}

func device(fd uintptr) (string, error) {
	name, err := unix.GetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE)
	return name, os.NewSyscallError("getsockopt", err)
}

// isMultipath reports whether fd is a Multipath TCP socket.
func isMultipath(fd uintptr) (bool, error) {
	proto, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PROTOCOL)
	if err != nil {
		return false, os.NewSyscallError("getsockopt", err)
	}
	return proto == unix.IPPROTO_MPTCP, nil
}

// nameIndex returns the index of the interface named name, asked of the
// kernel through the socket fd (SIOCGIFINDEX).
func nameIndex(fd uintptr, name string) (int, error) {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return 0, err
	}
	if err := unix.IoctlIfreq(int(fd), unix.SIOCGIFINDEX, ifr); err != nil {
		return 0, os.NewSyscallError("ioctl", err)
	}
	return int(ifr.Uint32()), nil
}

func boundIndex(fd uintptr) (int, error) {
	index, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BINDTOIFINDEX)
	return index, os.NewSyscallError("getsockopt", err)
}

// bindAddr binds fd to addr. With noPort, TCP defers the choice of the
// local port to connect(2), where it need only be unique per destination.
func bindAddr(fd uintptr, addr netip.AddrPort, noPort bool) error {
	if noPort {
		if err := unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1); err != nil {
			return os.NewSyscallError("setsockopt", err)
		}
	}
	var sa unix.Sockaddr
	if addr.Addr().Is4() {
		sa = &unix.SockaddrInet4{Port: int(addr.Port()), Addr: addr.Addr().As4()}
	} else {
		// The socket is already bound to the device, which gives a
		// link-local address its scope; a zone was checked against it.
		sa = &unix.SockaddrInet6{Port: int(addr.Port()), Addr: addr.Addr().As16()}
	}
	return os.NewSyscallError("bind", unix.Bind(int(fd), sa))
}
