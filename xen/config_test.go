package xen

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "testdata", "xen", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestParseConfigTestdata(t *testing.T) {
	cases := []struct {
		file string
		want DomuConfig
	}{
		{"xlexample.pvlinux", DomuConfig{Name: "example.pvlinux", Type: "pv", Kernel: "/boot/vmlinuz",
			Extra: "root=/dev/xvda1", Memory: 128, VCPUs: 2, VIFs: []string{""},
			Disks: []Disk{{Target: "/dev/vg/guest-volume", Format: "raw", Vdev: "xvda", Access: "rw"}}}},
		{"pybofh-style.cfg", DomuConfig{Name: "db1", Kernel: "/boot/vmlinuz-6.1.0-13-amd64",
			Ramdisk: "/boot/initrd.img-6.1.0-13-amd64", VCPUs: 4, Memory: 4096, MaxMem: 8192, Root: "/dev/xvda1 ro",
			Extra: `console=hvc0 x="quoted" back\slash`,
			Disks: []Disk{
				{Protocol: "phy", Target: "/dev/vg0/db1-root", Vdev: "xvda1", Access: "w"},
				{Protocol: "phy", Target: "/dev/drbd3", Vdev: "xvda2", Access: "w"},
				{Format: "raw", Vdev: "xvdb", Access: "ro", Target: "/dev/mapper/db1_keys"},
			},
			VIFs: []string{"mac=00:16:3e:00:00:01,bridge=br0"},
			Other: []Setting{
				{Key: "on_crash", Value: Value{Kind: "string", Str: "restart"}},
				{Key: "cpus", Value: Value{Kind: "string", Str: "2-3"}},
				{Key: "localtime", Value: Value{Kind: "number", Str: "0"}},
			}}},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			c, err := ParseConfig(readTestdata(t, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c, tc.want) {
				t.Fatalf("got  %+v\nwant %+v", c, tc.want)
			}
			out, err := c.Format()
			if err != nil {
				t.Fatal(err)
			}
			back, err := ParseConfig(out)
			if err != nil {
				t.Fatalf("written config does not parse: %v\n%s", err, out)
			}
			if !reflect.DeepEqual(back, c) {
				t.Fatalf("round trip:\n%s\ngot  %+v\nwant %+v", out, back, c)
			}
		})
	}
}

func TestParseConfigErrors(t *testing.T) {
	cases := []struct{ name, src, err string }{
		{"no name", `memory = 1`, "no name"},
		{"twice", "name = 'a'\nname = 'b'", "twice"},
		{"unterminated string", `name = "a`, "unterminated string"},
		{"newline in string", "name = \"a\nb\"", "unterminated string"},
		{"unterminated list", "name = 'a'\ndisk = [ 'x'", "unterminated list"},
		{"nested list", "name = 'a'\nx = [ [ 1 ] ]", "want a string, number or list"},
		{"no equals", "name 'a'", "want '='"},
		{"junk after value", "name = 'a' 'b'", "unexpected"},
		{"bad key", "9name = 'a'", "KEY = VALUE"},
		{"bad escape", `name = "a\n"`, "escape"},
		{"memory as string", "name = 'a'\nmemory = '512'", "want a number"},
		{"zero vcpus", "name = 'a'\nvcpus = 0", "positive"},
		{"bad name", "name = 'a b'", "domain name"},
		{"numeric name", "name = '42'", "domain id"},
		{"bad disk vdev", "name = 'a'\ndisk = [ 'phy:/dev/x,sda!,w' ]", "vdev"},
		{"bad disk access", "name = 'a'\ndisk = [ 'phy:/dev/x,xvda,rwx' ]", "access"},
		{"disk too short", "name = 'a'\ndisk = [ '/dev/x' ]", "want"},
		{"disk bad key", "name = 'a'\ndisk = [ 'vdev=xvda, backend=0, target=/x' ]", "not supported"},
		{"vif not list", "name = 'a'\nvif = 'bridge=br0'", "want a list"},
		{"maxmem below memory", "name = 'a'\nmemory = 512\nmaxmem = 256", "maxmem"},
		{"control char", "name = 'a'\nextra = '\x01'", "control"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.src))
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("err = %v, want %q", err, tc.err)
			}
		})
	}
}

func TestFormatConfig(t *testing.T) {
	c := DomuConfig{Name: "web", Kernel: "/boot/vmlinuz", Extra: `say "hi" \o/`, VCPUs: 2, Memory: 1024,
		Disks: []Disk{{Protocol: "phy", Target: "/dev/vg0/web", Vdev: "xvda", Access: "w"}}}
	out, err := c.Format()
	if err != nil {
		t.Fatal(err)
	}
	want := `# written by bofh
name = "web"
kernel = "/boot/vmlinuz"
extra = "say \"hi\" \\o/"
vcpus = 2
memory = 1024
disk = [
    "phy:/dev/vg0/web,xvda,w",
]
`
	if string(out) != want {
		t.Fatalf("got\n%s\nwant\n%s", out, want)
	}
	for _, bad := range []DomuConfig{
		{Name: "x", Extra: "a\nb"},
		{Name: "x", Disks: []Disk{{Protocol: "phy", Target: "/dev/a,b", Vdev: "xvda"}}},
		{Name: "x", Disks: []Disk{{Protocol: "phy", Target: "/dev/a", Vdev: "xvda", Access: "w\"]"}}},
		{Name: "x", Other: []Setting{{Key: "memory", Value: Value{Kind: "number", Str: "1"}}}},
		{Name: "x", Other: []Setting{{Key: "a-b", Value: Value{Kind: "number", Str: "1"}}}},
		{Name: "x", Other: []Setting{{Key: "ab", Value: Value{Kind: "number", Str: "1; rm"}}}},
	} {
		if _, err := bad.Format(); err == nil {
			t.Errorf("Format(%+v) accepted", bad)
		}
	}
}

func FuzzParseConfig(f *testing.F) {
	for _, n := range []string{"xlexample.pvlinux", "pybofh-style.cfg"} {
		f.Add(readTestdata(f, n))
	}
	f.Add([]byte("name='a';x=[1,'b',]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data)
		if err != nil {
			return
		}
		out, err := c.Format()
		if err != nil {
			t.Fatalf("parsed config does not format: %v", err)
		}
		back, err := ParseConfig(out)
		if err != nil {
			t.Fatalf("written config does not parse: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(back, c) {
			t.Fatalf("round trip changed it:\n%s\n%+v\n%+v", out, c, back)
		}
		again, _ := back.Format()
		if string(again) != string(out) {
			t.Fatalf("format not stable")
		}
	})
}
