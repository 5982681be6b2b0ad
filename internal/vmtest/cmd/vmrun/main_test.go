package main

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bofhkit/bofh/internal/vmtest"
)

// TestForwardEnv: BOFH_FULL_MATRIX set on the host reaches the guest's
// command; -env wins; nothing else of the host's environment is passed.
func TestForwardEnv(t *testing.T) {
	tests := []struct {
		name string
		host map[string]string
		env  []string
		want []string
	}{
		{"unset", map[string]string{"HOME": "/root"}, nil, nil},
		{"full", map[string]string{"BOFH_FULL_MATRIX": "1", "HOME": "/root"}, []string{"A=1"}, []string{"A=1", "BOFH_FULL_MATRIX=1"}},
		{"env-wins", map[string]string{"BOFH_FULL_MATRIX": "1"}, []string{"BOFH_FULL_MATRIX="}, []string{"BOFH_FULL_MATRIX="}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := forwardEnv(tc.env, func(k string) string { return tc.host[k] })
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("forwardEnv (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseShare(t *testing.T) {
	tests := []struct {
		in      string
		want    vmtest.Share
		wantErr bool
	}{
		{"/a", vmtest.Share{HostPath: "/a"}, false},
		{"/a:ro", vmtest.Share{HostPath: "/a", ReadOnly: true}, false},
		{"/a:/b", vmtest.Share{HostPath: "/a", GuestPath: "/b"}, false},
		{"/a:/b:ro", vmtest.Share{HostPath: "/a", GuestPath: "/b", ReadOnly: true}, false},
		{"/a:/b:/c", vmtest.Share{}, true},
	}
	for _, tc := range tests {
		sh, err := parseShare(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("parseShare(%q): %v", tc.in, err)
			continue
		}
		if err != nil {
			continue
		}
		if diff := cmp.Diff(tc.want, sh); diff != "" {
			t.Errorf("parseShare(%q) (-want +got):\n%s", tc.in, diff)
		}
	}
}
