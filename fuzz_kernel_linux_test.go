//go:build !bindtodev_stub

package bindtodev_test

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/bindtodev/bindtodev/internal/netlab"
)

// fuzzLab gives a fuzz target an interface of its own in the lab, named
// after the process, since fuzz workers share the lab's namespace. It
// returns nil when no lab can be made and BINDTODEV_LAB does not require
// one: the target then compares with the kernel's rule alone.
func fuzzLab(f *testing.F, prefix string) (*netlab.Lab, string, int) {
	f.Helper()
	lab, err := netlab.New()
	if err != nil {
		if os.Getenv(netlab.RequireEnv) == "require" {
			f.Fatalf("%s=require but the lab is unavailable: %v", netlab.RequireEnv, err)
		}
		f.Logf("no lab, comparing with the kernel's rule only: %v", err)
		return nil, "", 0
	}
	f.Cleanup(func() { _ = lab.Close() })
	peer, err := lab.NewHost("F")
	if err != nil {
		f.Fatal(err)
	}
	name := fmt.Sprintf("%s%d", prefix, os.Getpid())
	if err := lab.Veth(name, peer, "eth0"); err != nil {
		f.Fatal(err)
	}
	attrs, err := lab.Local.Link(name)
	if err != nil {
		f.Fatal(err)
	}
	return lab, name, attrs.Index
}

// kernelNames returns a function that asks the kernel what it makes of a
// name, by renaming a lab interface to it and reading the name back.
func kernelNames(f *testing.F) func(*testing.T, string) kernelVerdict {
	lab, base, index := fuzzLab(f, "fz")
	if lab == nil {
		return nil
	}
	// The kernel renames only interfaces that are down.
	if err := lab.Local.SetDown(base); err != nil {
		f.Fatal(err)
	}
	return func(t *testing.T, name string) kernelVerdict {
		// The kernel reads a primary name with '%' as a pattern
		// ("eth%d"), and refuses "all" and "default", which would clash
		// with its sysctl directories. Such names are valid all the
		// same: they can be alternative names, which SO_BINDTODEVICE
		// finds too (TestAltNames).
		if strings.Contains(name, "%") || name == "all" || name == "default" {
			return kernelNoVerdict
		}
		err := lab.Local.RenameLink(base, name)
		if err != nil {
			if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ERANGE) {
				return kernelRejected
			}
			return kernelNoVerdict
		}
		got, err := lab.Local.LinkName(index)
		if err != nil {
			t.Fatal(err)
		}
		if got != base {
			if err := lab.Local.RenameLink(got, base); err != nil {
				t.Fatal(err)
			}
		}
		if got == name {
			return kernelTook
		}
		return kernelChanged
	}
}
