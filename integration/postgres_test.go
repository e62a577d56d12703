package integration_test

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bindtodev/bindtodev/internal/netlab"
)

// postgresInstall says where PostgreSQL's server programs are, and as whom
// to run them: postgres refuses to run as root.
type postgresInstall struct {
	initdb, postgres string
	cred             *syscall.Credential
	uid, gid         int
}

// findPostgres locates initdb and postgres: on PATH, or where Debian's
// postgresql package puts them.
func findPostgres() (*postgresInstall, error) {
	initdb, err := exec.LookPath("initdb")
	if err != nil {
		found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
		if len(found) == 0 {
			return nil, errors.New("PostgreSQL's initdb is neither on PATH nor in /usr/lib/postgresql/*/bin (apt-get install postgresql)")
		}
		sort.Strings(found)
		initdb = found[len(found)-1]
	}
	if initdb, err = filepath.EvalSymlinks(initdb); err != nil {
		return nil, err
	}
	pg := &postgresInstall{initdb: initdb, postgres: filepath.Join(filepath.Dir(initdb), "postgres"), uid: os.Getuid(), gid: os.Getgid()}
	if _, err := os.Stat(pg.postgres); err != nil {
		return nil, fmt.Errorf("PostgreSQL's server program: %w", err)
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("postgres refuses to run as root, and there is no user to run it as: %w", err)
		}
		pg.uid, _ = strconv.Atoi(u.Uid)
		pg.gid, _ = strconv.Atoi(u.Gid)
		pg.cred = &syscall.Credential{Uid: uint32(pg.uid), Gid: uint32(pg.gid)}
	}
	return pg, nil
}

// requirePostgres returns the PostgreSQL installation, or skips t when there
// is none, and fails it instead when the lab is required, as in CI.
func requirePostgres(t *testing.T) *postgresInstall {
	t.Helper()
	pg, err := findPostgres()
	if err == nil {
		return pg
	}
	if os.Getenv(netlab.RequireEnv) == "require" {
		t.Fatalf("%s=require but no PostgreSQL server can run: %v", netlab.RequireEnv, err)
	}
	t.Skipf("no PostgreSQL server: %v", err)
	return nil
}

func (pg *postgresInstall) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Env = []string{"LC_ALL=C", "PATH=" + filepath.Dir(name)}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: pg.cred}
	return cmd
}

// postgresClusters makes one database cluster per peer name in a directory
// of its own (initdb once, then copies), owned by the user that runs the
// server. It returns the data directories.
func postgresClusters(t *testing.T, pg *postgresInstall, names ...string) map[string]string {
	t.Helper()
	dir, err := os.MkdirTemp("", "bindtodev-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chown(dir, pg.uid, pg.gid); err != nil {
		t.Fatal(err)
	}
	template := filepath.Join(dir, "template")
	cmd := pg.command(pg.initdb, "-D", template, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	// Only the lab's own networks may connect, without a password.
	hba := filepath.Join(template, "pg_hba.conf")
	rules := "local all all trust\nhost all all 198.18.0.0/15 trust\nhost all all 2001:db8::/32 trust\n"
	if err := os.WriteFile(hba, []byte(rules), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(hba, pg.uid, pg.gid); err != nil {
		t.Fatal(err)
	}
	data := map[string]string{}
	for _, name := range names {
		data[name] = filepath.Join(dir, name)
		if out, err := pg.command("/bin/cp", "-a", template, data[name]).CombinedOutput(); err != nil {
			t.Fatalf("copy the cluster for %s: %v\n%s", name, err, out)
		}
	}
	return data
}

// startPostgres runs a PostgreSQL server on data in h's namespace,
// listening on port 5432 of every address there, with cluster_name set to
// h's name so that a client can ask which server it reached. The server is
// forked from a thread in h's namespace, which stays until the server
// exits, so the kernel kills the server (Pdeathsig) if the test process
// dies; the test stops it otherwise.
func startPostgres(t *testing.T, pg *postgresInstall, h *netlab.Host, data string) {
	t.Helper()
	cmd := pg.command(pg.postgres, "-D", data, "-k", data,
		"-c", "listen_addresses=*", "-c", "port=5432", "-c", "cluster_name="+h.Name,
		"-c", "fsync=off", "-c", "max_connections=20", "-c", "shared_buffers=16MB")
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	logR, logW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logW, logW
	started := make(chan error, 1)
	exited := make(chan error, 1)
	go func() {
		exited <- h.Do(func() error {
			err := cmd.Start()
			logW.Close()
			started <- err
			if err != nil {
				return err
			}
			return cmd.Wait()
		})
	}()
	if err := <-started; err != nil {
		logR.Close()
		t.Fatalf("start postgres in %s: %v", h.Name, err)
	}
	var (
		mu  sync.Mutex
		log strings.Builder
	)
	ready := make(chan struct{})
	go func() {
		defer logR.Close()
		s := bufio.NewScanner(logR)
		once := sync.Once{}
		for s.Scan() {
			mu.Lock()
			log.WriteString(s.Text() + "\n")
			mu.Unlock()
			if strings.Contains(s.Text(), "ready to accept connections") {
				once.Do(func() { close(ready) })
			}
		}
	}()
	logText := func() string {
		mu.Lock()
		defer mu.Unlock()
		return log.String()
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT) // fast shutdown
		select {
		case err := <-exited:
			if err != nil {
				t.Logf("postgres in %s: %v", h.Name, err)
			}
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			if err := <-exited; err != nil {
				t.Logf("postgres in %s, killed: %v", h.Name, err)
			}
		}
	})
	select {
	case <-ready:
	case err := <-exited:
		t.Fatalf("postgres in %s exited before it was ready: %v\n%s", h.Name, err, logText())
	case <-time.After(30 * time.Second):
		t.Fatalf("postgres in %s was not ready after 30s:\n%s", h.Name, logText())
	}
}
