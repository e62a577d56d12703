//go:build !linux || bindtodev_stub

// The stubs also build on Linux with the tag bindtodev_stub, so that CI runs
// their tests on a real machine.

package bindtodev

import "net/netip"

const supported = false

func setDevice(uintptr, string) error { return ErrUnsupported }

func device(uintptr) (string, error) { return "", ErrUnsupported }

func isMultipath(uintptr) (bool, error) { return false, ErrUnsupported }

func nameIndex(uintptr, string) (int, error) { return 0, ErrUnsupported }

func boundIndex(uintptr) (int, error) { return 0, ErrUnsupported }

func bindAddr(uintptr, netip.AddrPort, bool) error { return ErrUnsupported }
