package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/bindtodev/bindtodev"
)

// exitCodesHelp is the part of every help text that documents exit codes.
const exitCodesHelp = `Exit status: 0 success, 1 failure at run time (unknown interface,
connection refused, timeout, ...), 2 bad flags or arguments (including an
interface name Linux can never accept).`

// newFlags returns a flag set for command name. It prints nothing itself:
// parseArgs prints errors, prefixed with the command, to stderr and the
// help text to stdout.
func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("bindtodev "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// helpText is a command's -h text: head, the flags, the exit codes.
func helpText(fs *flag.FlagSet, head string) string {
	var b strings.Builder
	b.WriteString(head)
	b.WriteString("\nFlags:\n")
	out := fs.Output()
	fs.SetOutput(&b)
	fs.PrintDefaults()
	fs.SetOutput(out)
	b.WriteString("\n" + exitCodesHelp + "\n")
	return b.String()
}

// parseArgs parses args with fs, accepting flags after the positional
// arguments too: "dial HOST:PORT -i eth0" is a common way to type the
// command, and the flag package alone would take "-i" for a second
// argument. A "--" ends the flags. It returns the positional arguments, or
// an exit code when the command must stop: exitOK after -h, --help or
// -help, exitUsage after a flag error.
func parseArgs(fs *flag.FlagSet, args []string, head string, stdout, stderr io.Writer) ([]string, int, bool) {
	var positional []string
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, helpText(fs, head))
			return nil, exitOK, false
		}
		if err != nil {
			return nil, usageError(fs, stderr, "%v", err), false
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, 0, true
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(positional, rest...), 0, true
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// usageError reports a usage mistake and returns exitUsage.
func usageError(fs *flag.FlagSet, stderr io.Writer, format string, a ...any) int {
	fmt.Fprintf(stderr, "%s: %s\nRun \"%s -h\" for help.\n", fs.Name(), fmt.Sprintf(format, a...), fs.Name())
	return exitUsage
}

// checkIface refuses a name that can never be an interface name, so that
// such a name is a usage error (exit 2) rather than a run-time failure.
func checkIface(fs *flag.FlagSet, stderr io.Writer, ifname string) (int, bool) {
	if err := bindtodev.ValidateName(ifname); err != nil {
		return usageError(fs, stderr, "-i: %v", err), false
	}
	return 0, true
}

// oneHostPort takes the single HOST:PORT argument, refusing anything else
// before any name is resolved or socket created.
func oneHostPort(fs *flag.FlagSet, stderr io.Writer, pos []string) (string, int, bool) {
	if len(pos) != 1 {
		return "", usageError(fs, stderr, "want one HOST:PORT argument, got %d", len(pos)), false
	}
	arg := pos[0]
	host, port, err := net.SplitHostPort(arg)
	if err == nil && host == "" {
		err = errors.New("missing host")
	}
	if err == nil {
		err = checkPort(port)
	}
	if err != nil {
		return "", usageError(fs, stderr, "%q is not HOST:PORT (an IPv6 address goes in brackets, as in [2001:db8::1]:22): %v", arg, err), false
	}
	return arg, 0, true
}

func checkPort(port string) error {
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		if _, err := net.LookupPort("tcp", port); err != nil {
			return fmt.Errorf("bad port %q", port)
		}
	}
	return nil
}

// failure prints a run-time error of command cmd and returns exitFailure.
// The interface is named even when the error itself does not say it (a
// timeout, a refused connection), and an unknown interface gets the list of
// interfaces that do exist.
func failure(stderr io.Writer, cmd, ifname string, err error) int {
	where := "unbound"
	if ifname != "" {
		where = fmt.Sprintf("interface %q", ifname)
	}
	fmt.Fprintf(stderr, "bindtodev %s: %s: %v\n", cmd, where, err)
	if hint := hintFor(ifname, err); hint != "" {
		fmt.Fprintf(stderr, "bindtodev %s: %s\n", cmd, hint)
	}
	return exitFailure
}

func hintFor(ifname string, err error) string {
	switch {
	case ifname != "" && errors.Is(err, syscall.ENODEV):
		names := interfaceNames()
		if names == "" {
			return fmt.Sprintf("no interface is named %q", ifname)
		}
		return fmt.Sprintf("no interface is named %q; this network namespace has: %s", ifname, names)
	case ifname != "" && errors.Is(err, syscall.ENETUNREACH):
		return fmt.Sprintf("%q is down, or has no address or route for this destination", ifname)
	case errors.Is(err, os.ErrPermission):
		return permissionHint(err)
	case errors.Is(err, bindtodev.ErrUnsupported):
		return "SO_BINDTODEVICE exists only on Linux"
	}
	return ""
}

// permissionHint names the privilege that a refused operation lacked, and
// only one it knows: SO_BINDTODEVICE itself needs CAP_NET_RAW for a re-bind
// and, before Linux 5.7, for every bind; net's own bind(2) of a port below
// net.ipv4.ip_unprivileged_port_start needs CAP_NET_BIND_SERVICE.
func permissionHint(err error) string {
	var e *bindtodev.Error
	if errors.As(err, &e) && e.Op == "bind" {
		return fmt.Sprintf("binding to %q (SO_BINDTODEVICE) needs CAP_NET_RAW before Linux 5.7 (run as root, or grant the capability)", e.Interface)
	}
	var opErr *net.OpError
	if !errors.Is(err, syscall.EACCES) || !errors.As(err, &opErr) || opErr.Op != "listen" || opErr.Addr == nil {
		return ""
	}
	_, portText, splitErr := net.SplitHostPort(opErr.Addr.String())
	port, parseErr := strconv.ParseUint(portText, 10, 16)
	if splitErr != nil || parseErr != nil {
		return ""
	}
	start, known := unprivilegedPortStart()
	if port == 0 || port >= uint64(start) {
		return ""
	}
	sysctl := fmt.Sprintf("net.ipv4.ip_unprivileged_port_start is %d in this network namespace", start)
	if !known {
		sysctl = fmt.Sprintf("net.ipv4.ip_unprivileged_port_start, %d by default", start)
	}
	return fmt.Sprintf("port %d is a privileged port: listening on it needs CAP_NET_BIND_SERVICE (run as root, or grant the capability), or a port from %d up (%s; it applies to IPv6 too)", port, start, sysctl)
}

// unprivilegedPortStart reads the lowest port that needs no privilege, and
// whether it could be read; Linux's default is 1024.
func unprivilegedPortStart() (int, bool) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	if err != nil {
		return 1024, false
	}
	start, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 1024, false
	}
	return start, true
}

func interfaceNames() string {
	ifs, err := net.Interfaces()
	if err != nil {
		return ""
	}
	names := make([]string, len(ifs))
	for i, ifc := range ifs {
		names[i] = ifc.Name
	}
	return strings.Join(names, ", ")
}

// addrPortOf converts a socket address from net into a netip.AddrPort with
// an IPv4-mapped IPv6 address shown as IPv4.
func addrPortOf(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.TCPAddr:
		ap = a.AddrPort()
	case *net.UDPAddr:
		ap = a.AddrPort()
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// deviceOf reads back the interface c's socket is bound to; "" means
// unbound.
func deviceOf(c any) (string, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return "", fmt.Errorf("%T exposes no socket", c)
	}
	return bindtodev.Device(sc)
}

// flagGiven reports whether the flag name was on the command line, which
// tells "-i ”" (an invalid name) apart from no -i at all.
func flagGiven(fs *flag.FlagSet, name string) bool {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given
}
