package netlab

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

const (
	// innerEnv marks a process that Enter has started in its own network
	// namespace.
	innerEnv = "BINDTODEV_NETLAB_INNER"
	// RequireEnv is the environment variable that, set to "require", turns
	// a lab that cannot be built from a skipped test into a failed one. CI
	// sets it.
	RequireEnv = "BINDTODEV_LAB"
)

// errUnavailable is nil once the process runs in a private namespace, and
// says why not otherwise.
var errUnavailable = errors.New("netlab.Enter was not called")

// labNS is the private namespace Enter put the process in.
var labNS netns.NsHandle

// Enter makes sure the process runs in a private network namespace. In the
// process that started it, Enter re-executes the program there with the same
// arguments, environment and standard streams, waits for it and exits with
// its status: Enter does not return. In the re-executed process, or when no
// namespace can be made, it returns: nil when the lab can be used, otherwise
// the reason, which [Available] reports again later.
func Enter() error {
	if os.Getenv(innerEnv) == "1" {
		errUnavailable = checkPrivate()
		if errUnavailable == nil {
			errUnavailable = prepareNamespace()
		}
		if errUnavailable == nil {
			// Taken now, while every thread is still in it: later, the
			// main thread may be parked in a peer's namespace by a
			// locked goroutine that ended on it.
			labNS, errUnavailable = netns.Get()
		}
		return errUnavailable
	}
	if runtime.GOOS != "linux" {
		errUnavailable = fmt.Errorf("network namespaces exist only on Linux, not %s", runtime.GOOS)
		return errUnavailable
	}
	exe, err := os.Executable()
	if err != nil {
		errUnavailable = fmt.Errorf("find own executable: %w", err)
		return errUnavailable
	}
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Args[0] = os.Args[0]
	cmd.Env = append(os.Environ(), innerEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNET,
		// The lab must not outlive its parent, or a killed test would
		// leave a process behind.
		Pdeathsig: syscall.SIGKILL,
	}
	if os.Geteuid() != 0 {
		cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWUSER
		cmd.SysProcAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}}
		cmd.SysProcAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}}
		cmd.SysProcAttr.GidMappingsEnableSetgroups = false
	}
	// Pdeathsig fires when the thread that started the child exits.
	runtime.LockOSThread()
	if err := cmd.Start(); err != nil {
		runtime.UnlockOSThread()
		errUnavailable = namespaceError(err, cmd.SysProcAttr.Cloneflags&syscall.CLONE_NEWUSER != 0)
		return errUnavailable
	}
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT)
	go func() {
		for s := range signals {
			_ = cmd.Process.Signal(s)
		}
	}()
	err = cmd.Wait()
	var exit *exec.ExitError
	switch {
	case err == nil:
		os.Exit(0)
	case errors.As(err, &exit):
		if status, ok := exit.Sys().(syscall.WaitStatus); ok && status.Signaled() {
			os.Exit(128 + int(status.Signal()))
		}
		os.Exit(exit.ExitCode())
	}
	fmt.Fprintln(os.Stderr, "netlab:", err)
	os.Exit(1)
	return nil
}

// namespaceError explains why the namespaces could not be made.
func namespaceError(err error, user bool) error {
	if user && errors.Is(err, syscall.ENOSPC) {
		// clone(2) says ENOSPC, which reads as a full disk, when the
		// count of user namespaces has reached its limit.
		limit, rerr := os.ReadFile("/proc/sys/user/max_user_namespaces")
		current := "?"
		if rerr == nil {
			current = string(bytes.TrimSpace(limit))
		}
		return fmt.Errorf("cannot create a user namespace (%w): the limit user.max_user_namespaces (%s) is reached; raise it (sysctl -w user.max_user_namespaces=15000) or run as root", err, current)
	}
	return fmt.Errorf("cannot create a private network namespace (%w); run as root, or allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, kernel.apparmor_restrict_unprivileged_userns=0)", err)
}

// Available reports nil when the process runs in a private network
// namespace made by Enter, and otherwise why it does not.
func Available() error { return errUnavailable }

// checkPrivate refuses to treat the host's namespace as a lab, whatever the
// environment says.
func checkPrivate() error {
	var self, init unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &self); err != nil {
		return fmt.Errorf("read own network namespace: %w", err)
	}
	if err := unix.Stat("/proc/1/ns/net", &init); err != nil {
		// Unprivileged: PID 1's namespace is hidden, and the host's
		// interfaces could not be changed anyway.
		return nil
	}
	if self.Ino == init.Ino && self.Dev == init.Dev {
		return fmt.Errorf("%s is set but the process shares PID 1's network namespace", innerEnv)
	}
	return nil
}

// prepareNamespace brings the private namespace to the state every lab
// starts from.
func prepareNamespace() error {
	if err := quietSysctls(); err != nil {
		return err
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo: %w", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("set lo up: %w", err)
	}
	return nil
}

// quietSysctls makes the calling thread's namespace behave the same on every
// machine: new interfaces are usable at once (no IPv6 duplicate address
// detection delay), and reverse-path filtering is off, whatever the host
// passed on to new namespaces, so that replies arriving on an interface the
// routing table does not prefer are delivered.
func quietSysctls() error {
	for _, key := range []string{
		"net/ipv6/conf/all/accept_dad",
		"net/ipv6/conf/default/accept_dad",
		"net/ipv4/conf/all/rp_filter",
		"net/ipv4/conf/default/rp_filter",
	} {
		if err := os.WriteFile("/proc/sys/"+key, []byte("0"), 0); err != nil {
			return fmt.Errorf("sysctl %s: %w", key, err)
		}
	}
	return nil
}
