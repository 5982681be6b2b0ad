package main

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/bofhkit/bofh/internal/hosttest"
)

func TestCLINetBadInput(t *testing.T) {
	t.Parallel()
	badInput(t, nil, []cliCase{
		bad("link name too long", "is 17 bytes long; the kernel allows at most 15", "net", "link", "add", "abcdefghijklmnopq", "--type", "dummy"),
		bad("link name with slash", "contains '/'", "net", "link", "add", "bad/name", "--type", "dummy"),
		bad("link type", `link type "frob"`, "net", "link", "add", "br0", "--type", "frob"),
		bad("vlan id too big", "vlan_id 5000: want 1 to 4094", "net", "link", "add", "eth0.50", "--type", "vlan", "--parent", "eth0", "--vlan-id", "5000"),
		bad("vlan id 0", "vlan_id 0: want 1 to 4094", "net", "link", "add", "eth0.0", "--type", "vlan", "--parent", "eth0", "--vlan-id", "0"),
		bad("veth without peer", "peer is required", "net", "link", "add", "v0", "--type", "veth"),
		bad("up and down", "--up and --down exclude each other", "net", "link", "set", "br0", "--up", "--down"),
		bad("mtu", "mtu 10", "net", "link", "set", "br0", "--mtu", "10"),
		bad("address without prefix", "want address/prefix-length", "net", "addr", "add", "br0", "10.1.0.1"),
		bad("address out of range", `address "300.0.0.1/24"`, "net", "addr", "add", "br0", "300.0.0.1/24"),
		bad("route destination", `destination "notanet"`, "net", "route", "add", "notanet", "--via", "10.0.0.1"),
		bad("netns with slash on show", `network namespace name "x/y"`, "net", "--netns", "x/y", "link", "show"),
		bad("netns with slash on route show", `network namespace name "x/y"`, "net", "--netns", "x/y", "route", "show"),
		bad("netns missing", `network namespace "bofh-cli-nonexistent"`, "net", "--netns", "bofh-cli-nonexistent", "link", "add", "br0", "--type", "bridge"),
	})
}

func TestCLINetDryRunAndJSON(t *testing.T) {
	t.Parallel()
	ns := hosttest.NetNS(t, fmt.Sprintf("bofhcli%d", os.Getpid()))
	out, _ := dryRun(t, nil, "", []string{"net", "--netns", ns.Name, "link", "add", "br9", "--type", "bridge"},
		"would create bridge link br9 in netns "+ns.Name)
	if strings.Contains(out, "done") {
		t.Errorf("a dry run reports done: %q", out)
	}
	var links []struct {
		Name string
		Up   bool
	}
	jsonOut(t, nil, &links, "net", "--netns", ns.Name, "link", "show")
	if len(links) != 1 || links[0].Name != "lo" {
		t.Fatalf("links in the new netns after a dry run: %+v", links)
	}
	var routes []map[string]any
	jsonOut(t, nil, &routes, "net", "--netns", ns.Name, "route", "show", "--all")
	if routes == nil {
		t.Fatal("route show -o json printed null, want []")
	}
	helpExample(t, []string{"net"}, []string{"net", "link"}, []string{"net", "link", "add"}, []string{"net", "addr"}, []string{"net", "route"})
}
