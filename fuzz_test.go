package bindtodev_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/bindtodev/bindtodev"
)

// devValidName restates the kernel's rule for interface names
// (dev_valid_name in net/core/dev.c) independently of the package: not
// empty, shorter than IFNAMSIZ (16) counting the terminating NUL, not "."
// or "..", and no '/', ':' or white space, where the kernel's isspace()
// also matches 0xA0. A NUL ends a C string, so a name holding one would
// reach the kernel cut short: it can never be the name asked for.
func devValidName(name string) bool {
	if name == "" || len(name) >= 16 || name == "." || name == ".." {
		return false
	}
	for _, c := range []byte(name) {
		switch {
		case c == 0, c == '/', c == ':', c == ' ', c >= '\t' && c <= '\r', c == 0xa0:
			return false
		}
	}
	return true
}

// FuzzValidateName compares ValidateName with the kernel's rule, and on
// Linux with the kernel itself, which renames an interface of the lab to
// the name: an accepted name must be taken as it is, never cut or changed.
func FuzzValidateName(f *testing.F) {
	for _, seed := range []string{"eth0", "", ".", "..", "...", "a/b", "a:b", "a b", "a\tb", "a\xa0b", "a\x85b",
		"a\x00b", "0123456789abcde", "0123456789abcdef", "é", "\xff", "%d", "a%db", "lo", "-", "all"} {
		f.Add(seed)
	}
	kernel := kernelNames(f)
	f.Fuzz(func(t *testing.T, name string) {
		err := bindtodev.ValidateName(name)
		if err != nil {
			if !errors.Is(err, bindtodev.ErrInvalidName) {
				t.Fatalf("ValidateName(%q) = %v, which does not wrap ErrInvalidName", name, err)
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("%q", name)) {
				t.Fatalf("ValidateName(%q) = %v, which does not quote the name", name, err)
			}
		}
		if want := devValidName(name); (err == nil) != want {
			t.Fatalf("ValidateName(%q) = %v, but the kernel's rule says valid=%v", name, err, want)
		}
		if err == nil && (len(name) > 15 || strings.IndexByte(name, 0) >= 0) {
			t.Fatalf("ValidateName accepted %q, which the kernel would truncate", name)
		}
		if kernel == nil {
			return
		}
		verdict := kernel(t, name)
		switch {
		case err == nil && verdict == kernelChanged:
			t.Fatalf("ValidateName accepted %q, but the kernel changes it", name)
		case err == nil && verdict == kernelRejected:
			t.Fatalf("ValidateName accepted %q, but the kernel rejects it", name)
		case err != nil && verdict == kernelTook:
			t.Fatalf("ValidateName refused %q (%v), but the kernel takes it as it is", name, err)
		}
	})
}

// kernelVerdict is what the kernel did with a name given to an interface.
type kernelVerdict int

const (
	kernelTook      kernelVerdict = iota // the interface now has exactly that name
	kernelChanged                        // the interface got another name
	kernelRejected                       // the name is invalid (EINVAL, ERANGE)
	kernelNoVerdict                      // refused for another reason, such as a name in use
)
