package drbd

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	lab "github.com/bofhkit/bofh/internal/capture"
	"github.com/bofhkit/bofh/run"
)

func TestParseStatusJSON(t *testing.T) {
	sts, err := ParseStatusJSON([]byte(readCapture(t, "status9-connected.json")))
	if err != nil {
		t.Fatal(err)
	}
	if len(sts) != 1 {
		t.Fatalf("got %d resources", len(sts))
	}
	s := sts[0]
	if s.Name != "beijing" || s.Role != "Primary" || len(s.Devices) != 1 || s.Devices[0].Minor != 5 || s.Devices[0].DiskState != "UpToDate" {
		t.Errorf("resource %+v", s)
	}
	if len(s.Connections) != 1 || s.Connections[0].PeerName != "salt-node3" || s.Connections[0].State != "Connected" || s.Connections[0].PeerRole != "Secondary" {
		t.Errorf("connections %+v", s.Connections)
	}
	pd := s.Connections[0].PeerDevices[0]
	if pd.ReplicationState != "Established" || pd.PeerDiskState != "UpToDate" || pd.PercentInSync != 100 || pd.Sync != nil {
		t.Errorf("peer device %+v", pd)
	}
	if !s.Connected() || !s.UpToDate() || s.Syncing() {
		t.Errorf("connected %v uptodate %v syncing %v", s.Connected(), s.UpToDate(), s.Syncing())
	}
	// the same document during a resync (fields as drbdsetup names them)
	syncing := strings.NewReplacer(`"replication-state": "Established"`, `"replication-state": "SyncSource"`,
		`"peer-disk-state": "UpToDate"`, `"peer-disk-state": "Inconsistent"`, `"percent-in-sync": 100.00`, `"percent-in-sync": 42.50`).
		Replace(readCapture(t, "status9-connected.json"))
	sts, err = ParseStatusJSON([]byte(syncing))
	if err != nil {
		t.Fatal(err)
	}
	if p := sts[0].Connections[0].PeerDevices[0]; p.Sync == nil || p.Sync.Percent != 42.5 || !sts[0].Syncing() {
		t.Errorf("syncing peer device %+v", p)
	}
	for _, bad := range []string{"", "{}", `[{"role":"Primary"}]`, "[", `[{"name":"x","devices":"no"}]`} {
		if _, err := ParseStatusJSON([]byte(bad)); err == nil {
			t.Errorf("ParseStatusJSON(%q) accepted", bad)
		}
	}
}

func procFixtures(t testing.TB) []string {
	m, _ := filepath.Glob(filepath.Join("..", "testdata", "drbd", "proc-drbd-*.txt"))
	if len(m) == 0 {
		t.Fatal("no /proc/drbd captures")
	}
	return m
}

func TestParseProc(t *testing.T) {
	for _, tc := range []struct {
		file               string
		cstate, role, ds   string
		peerRole, peerDS   string
		sync               bool
		syncing, connected bool
	}{
		{"proc-drbd-connected.txt", "Connected", "Secondary", "Inconsistent", "Secondary", "Inconsistent", false, false, true},
		{"proc-drbd-sync.txt", "SyncSource", "Primary", "UpToDate", "Secondary", "Inconsistent", true, true, true},
		{"proc-drbd-synced.txt", "Connected", "Primary", "UpToDate", "Secondary", "UpToDate", false, false, true},
		// connected to a peer: testdata/capture/drbd (capture_test.go) has
		// one node only (WFConnection, StandAlone, down)
	} {
		t.Run(tc.file, func(t *testing.T) {
			p, err := ParseProc([]byte(readCapture(t, tc.file)))
			if err != nil {
				t.Fatal(err)
			}
			if p.Version != "8.4.11" {
				t.Errorf("version %q", p.Version)
			}
			m, ok := p.Get(0)
			if !ok {
				t.Fatalf("no minor 0 in %+v", p)
			}
			if m.CState != tc.cstate || m.Role != tc.role || m.DiskState != tc.ds || m.PeerRole != tc.peerRole || m.PeerDiskState != tc.peerDS || (m.Protocol != "C") != (tc.cstate == "StandAlone") {
				t.Errorf("minor 0: %+v", m)
			}
			if (m.Sync != nil) != tc.sync {
				t.Errorf("sync %+v, want %v", m.Sync, tc.sync)
			}
			if m.Sync != nil && (m.Sync.Percent <= 0 || m.Sync.Percent > 100) {
				t.Errorf("sync %+v", m.Sync)
			}
			st, ok := StatusFromProc("ra", m)
			if !ok || st.Syncing() != tc.syncing || st.Connected() != tc.connected || st.Role != tc.role {
				t.Errorf("status %+v: syncing %v connected %v", st, st.Syncing(), st.Connected())
			}
		})
	}
	if _, ok := StatusFromProc("x", ProcMinor{CState: "Unconfigured"}); ok {
		t.Error("unconfigured minor has a status")
	}
}

func TestResourceStatus84(t *testing.T) {
	noJSON := lab.ReadFile(t, "drbd", "err-status-json-primary.txt")
	f := run.NewFake(t)
	f.Expect("drbdsetup", "status", "--json", "ra").Out(string(noJSON.Stdout)).Fail(noJSON.Exit, string(noJSON.Stderr))
	f.Expect("drbdadm", "sh-minor", "ra").Out("0\n")
	f.Expect("cat", "/proc/drbd").Out(readCapture(t, "proc-drbd-sync.txt"))
	st, err := ResourceStatus(context.Background(), f, "ra")
	if err != nil {
		t.Fatal(err)
	}
	if st.Name != "ra" || st.Role != "Primary" || !st.Syncing() {
		t.Errorf("status %+v", st)
	}
	f.Done()
	f = run.NewFake(t)
	f.Expect("drbdsetup", "status", "--json", "ra").Out(string(noJSON.Stdout)).Fail(noJSON.Exit, string(noJSON.Stderr))
	f.Expect("drbdadm", "sh-minor", "ra").Out("0\n")
	f.Expect("cat", "/proc/drbd").Out(string(lab.ReadFile(t, "drbd", "proc-drbd-none.txt").Stdout))
	if _, err := ResourceStatus(context.Background(), f, "ra"); !errors.Is(err, ErrNotUp) {
		t.Errorf("down resource: %v", err)
	}
	f.Done()
}

func FuzzParseStatusJSON(f *testing.F) {
	f.Add([]byte(readCapture(f, "status9-connected.json")))
	f.Fuzz(func(t *testing.T, data []byte) {
		sts, err := ParseStatusJSON(data)
		if err != nil {
			return
		}
		for _, s := range sts {
			if s.Name == "" {
				t.Fatal("resource without a name accepted")
			}
			s.Connected()
			s.Syncing()
		}
	})
}

func FuzzParseProc(f *testing.F) {
	for _, p := range procFixtures(f) {
		b, _ := os.ReadFile(p)
		f.Add(b)
	}
	lab.Seed(f, "drbd", func(n string) bool { return strings.HasPrefix(n, "proc-drbd-") })
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParseProc(data)
		if err != nil {
			return
		}
		for _, m := range p.Minors {
			if m.Minor < 0 {
				t.Fatalf("negative minor %+v", m)
			}
			StatusFromProc("x", m)
		}
	})
}
