package cgbind

import (
	"errors"
	"strings"
	"testing"
)

const hybridMountinfo = `25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 master:3 - cgroup2 cgroup2 rw
`

func TestCgroup2Mounts(t *testing.T) {
	tests := []struct {
		name, in string
		want     []mount
	}{
		{"hybrid", hybridMountinfo, []mount{{"/", "/sys/fs/cgroup/unified"}}},
		{"unified, container root", "99 98 0:40 /kubepods/pod1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n",
			[]mount{{"/kubepods/pod1", "/sys/fs/cgroup"}}},
		{"escaped space", `50 1 0:40 / /mnt/cg\0402 rw - cgroup2 none rw` + "\n", []mount{{"/", "/mnt/cg 2"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := cgroup2Mounts(strings.NewReader(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) || got[0] != tt.want[0] {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestNoCgroup2Mount(t *testing.T) {
	in := strings.Replace(hybridMountinfo, "cgroup2 cgroup2", "tmpfs tmpfs", 1)
	_, err := cgroup2Mounts(strings.NewReader(in))
	if !errors.Is(err, ErrNoCgroup2) || !strings.Contains(err.Error(), "mount -t cgroup2") {
		t.Errorf("err = %v, want ErrNoCgroup2 with a hint how to mount one", err)
	}
}

func TestCgroupDir(t *testing.T) {
	own, err := unifiedPath(strings.NewReader("4:memory:/x\n0::/system.slice/agent.service\n"))
	if err != nil || own != "/system.slice/agent.service" {
		t.Fatalf("unifiedPath = %q, %v", own, err)
	}
	mounts := []mount{{"/system.slice", "/mnt/a"}, {"/", "/sys/fs/cgroup"}}
	if dir, err := cgroupDir(mounts, own); err != nil || dir != "/mnt/a/agent.service" {
		t.Errorf("cgroupDir = %q, %v", dir, err)
	}
	if _, err := cgroupDir(mounts[:1], "/user.slice"); !errors.Is(err, ErrNoCgroup2) {
		t.Errorf("cgroup outside every mount: err = %v, want ErrNoCgroup2", err)
	}
	if _, err := unifiedPath(strings.NewReader("4:memory:/x\n")); !errors.Is(err, ErrNoCgroup2) {
		t.Errorf("no cgroup v2 line: err = %v, want ErrNoCgroup2", err)
	}
}
