package libvirt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"
)

// DefaultSocket is libvirtd's read-write unix socket on Debian.
const DefaultSocket = "/var/run/libvirt/libvirt-sock"

// DefaultURI is the driver bofh opens unless told otherwise.
const DefaultURI = "qemu:///system"

// Config is the site file's `libvirt:` section.
type Config struct {
	// Socket is libvirtd's unix socket (default DefaultSocket).
	Socket string `yaml:"socket"`
	// URI is the driver to open through it: qemu:///system (default),
	// xen:///system, test:///default.
	URI string `yaml:"uri"`
}

// Conn says where a step connects: it is part of every step's parameters,
// so a rollback after a crash talks to the same daemon and driver.
type Conn struct {
	Socket string `json:"socket,omitempty" doc:"libvirtd unix socket (default /var/run/libvirt/libvirt-sock)"`
	URI    string `json:"uri,omitempty" doc:"driver URI: qemu:///system (default), xen:///system, test:///default"`
}

// ConnFrom returns the connection a site config names.
func ConnFrom(c Config) Conn { return Conn{Socket: c.Socket, URI: c.URI} }

func (c Conn) socket() string {
	if c.Socket == "" {
		return DefaultSocket
	}
	return c.Socket
}

func (c Conn) uri() string {
	if c.URI == "" {
		return DefaultURI
	}
	return c.URI
}

// Validate checks the connection parameters without touching the system.
func (c Conn) Validate() error {
	if c.Socket != "" {
		if err := checkAbs("socket", c.Socket); err != nil {
			return err
		}
	}
	if c.URI != "" {
		scheme, rest, ok := strings.Cut(c.URI, "://")
		if !ok || scheme == "" || strings.ContainsAny(c.URI, " \t\n") {
			return fmt.Errorf("uri %q: want driver:///path, e.g. qemu:///system", c.URI)
		}
		switch strings.SplitN(scheme, "+", 2)[0] {
		case "qemu", "xen", "test", "lxc":
		default:
			return fmt.Errorf("uri %q: driver %q not supported (qemu, xen, test, lxc)", c.URI, scheme)
		}
		if strings.Contains(scheme, "+") || !strings.HasPrefix(rest, "/") {
			return fmt.Errorf("uri %q: only local driver URIs (driver:///path); bofh reaches the daemon through its socket", c.URI)
		}
	}
	return nil
}

// Client is an open connection to one libvirt driver through libvirtd.
type Client struct {
	l    *golibvirt.Libvirt
	conn Conn
}

// ErrUnreachable wraps a failure to reach libvirtd.
var ErrUnreachable = errors.New("libvirtd unreachable")

// Dial connects to libvirtd's socket and opens the driver.
func Dial(ctx context.Context, c Conn) (*Client, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	timeout := 10 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		if d := time.Until(dl); d < timeout {
			timeout = max(d, time.Millisecond)
		}
	}
	if _, err := os.Stat(c.socket()); err != nil {
		return nil, fmt.Errorf("%w: socket %s: %w (is libvirtd running?)", ErrUnreachable, c.socket(), err)
	}
	l := golibvirt.NewWithDialer(dialers.NewLocal(dialers.WithSocket(c.socket()), dialers.WithLocalTimeout(timeout)))
	if err := l.ConnectToURI(golibvirt.ConnectURI(c.uri())); err != nil {
		return nil, fmt.Errorf("%w: connect %s at %s: %w", ErrUnreachable, c.uri(), c.socket(), err)
	}
	return &Client{l: l, conn: c}, nil
}

// Close closes the connection.
func (c *Client) Close() error {
	if err := c.l.Disconnect(); err != nil {
		return fmt.Errorf("disconnect from libvirtd: %w", err)
	}
	return nil
}

// Raw returns the go-libvirt connection for calls this package does not wrap.
func (c *Client) Raw() *golibvirt.Libvirt { return c.l }

func code(err error) uint32 {
	var e golibvirt.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

// IsNotFound reports whether err says the domain, network, pool or volume
// does not exist.
func IsNotFound(err error) bool {
	switch golibvirt.ErrorNumber(code(err)) {
	case golibvirt.ErrNoDomain, golibvirt.ErrNoNetwork, golibvirt.ErrNoStoragePool, golibvirt.ErrNoStorageVol:
		return true
	}
	return false
}

func isNotRunning(err error) bool {
	return golibvirt.ErrorNumber(code(err)) == golibvirt.ErrOperationInvalid &&
		strings.Contains(err.Error(), "not running")
}

// State is a domain's state as libvirt reports it.
type State string

// Domain states.
const (
	StateNone      State = "nostate"
	StateRunning   State = "running"
	StateBlocked   State = "blocked"
	StatePaused    State = "paused"
	StateShutdown  State = "shutdown" // being shut down
	StateShutoff   State = "shutoff"
	StateCrashed   State = "crashed"
	StateSuspended State = "pmsuspended"
	StateAbsent    State = "absent" // no such domain (bofh's own)
)

func stateOf(s int32) State {
	switch golibvirt.DomainState(s) {
	case golibvirt.DomainRunning:
		return StateRunning
	case golibvirt.DomainBlocked:
		return StateBlocked
	case golibvirt.DomainPaused:
		return StatePaused
	case golibvirt.DomainShutdown:
		return StateShutdown
	case golibvirt.DomainShutoff:
		return StateShutoff
	case golibvirt.DomainCrashed:
		return StateCrashed
	case golibvirt.DomainPmsuspended:
		return StateSuspended
	}
	return StateNone
}

// Active reports whether the domain has a running hypervisor instance.
func (s State) Active() bool {
	return s != StateShutoff && s != StateAbsent && s != StateNone
}

// DomainInfo describes one domain.
type DomainInfo struct {
	Name   string `json:"name"`
	UUID   string `json:"uuid"`
	ID     int32  `json:"id"`
	State  State  `json:"state"`
	Title  string `json:"title,omitempty"`
	VCPUs  int    `json:"vcpus"`
	MemKiB uint64 `json:"memory_kib"`
}

func uuidString(u golibvirt.UUID) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

func (c *Client) lookup(name string) (golibvirt.Domain, error) {
	d, err := c.l.DomainLookupByName(name)
	if err != nil {
		return d, fmt.Errorf("domain %s: %w", name, err)
	}
	return d, nil
}

func (c *Client) info(d golibvirt.Domain) (DomainInfo, error) {
	st, _, err := c.l.DomainGetState(d, 0)
	if err != nil {
		return DomainInfo{}, fmt.Errorf("domain %s state: %w", d.Name, err)
	}
	xmlDesc, err := c.l.DomainGetXMLDesc(d, 0)
	if err != nil {
		return DomainInfo{}, fmt.Errorf("domain %s XML: %w", d.Name, err)
	}
	x, err := parseDomainXML(xmlDesc)
	if err != nil {
		return DomainInfo{}, fmt.Errorf("domain %s: %w", d.Name, err)
	}
	mem := x.Memory.Value
	switch x.Memory.Unit {
	case "", "KiB", "k", "K":
	case "MiB", "M":
		mem <<= 10
	case "GiB", "G":
		mem <<= 20
	case "b", "bytes":
		mem >>= 10
	}
	return DomainInfo{Name: d.Name, UUID: uuidString(d.UUID), ID: d.ID, State: stateOf(st),
		Title: x.Title, VCPUs: x.VCPU, MemKiB: mem}, nil
}

// Domain returns one domain; an error satisfying IsNotFound if it does not
// exist.
func (c *Client) Domain(name string) (DomainInfo, error) {
	d, err := c.lookup(name)
	if err != nil {
		return DomainInfo{}, err
	}
	return c.info(d)
}

// DomainState returns a domain's state, StateAbsent if it does not exist.
func (c *Client) DomainState(name string) (State, error) {
	d, err := c.l.DomainLookupByName(name)
	if IsNotFound(err) {
		return StateAbsent, nil
	}
	if err != nil {
		return "", fmt.Errorf("domain %s: %w", name, err)
	}
	st, _, err := c.l.DomainGetState(d, 0)
	if IsNotFound(err) {
		return StateAbsent, nil
	}
	if err != nil {
		return "", fmt.Errorf("domain %s state: %w", name, err)
	}
	return stateOf(st), nil
}

// Domains lists every domain, active or not.
func (c *Client) Domains() ([]DomainInfo, error) {
	ds, _, err := c.l.ConnectListAllDomains(1, 0)
	if err != nil {
		return nil, fmt.Errorf("list domains: %w", err)
	}
	out := make([]DomainInfo, 0, len(ds))
	for _, d := range ds {
		i, err := c.info(d)
		if IsNotFound(err) {
			continue // gone meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, i)
	}
	return out, nil
}

// Define defines (persistently) the domain of spec and returns its UUID.
func (c *Client) Define(spec DomainSpec) (string, error) {
	x, err := spec.XML()
	if err != nil {
		return "", err
	}
	d, err := c.l.DomainDefineXML(x)
	if err != nil {
		return "", fmt.Errorf("define domain %s: %w", spec.Name, err)
	}
	return uuidString(d.UUID), nil
}

// Start starts a defined domain.
func (c *Client) Start(name string) error {
	d, err := c.lookup(name)
	if err != nil {
		return err
	}
	if err := c.l.DomainCreate(d); err != nil {
		return fmt.Errorf("start domain %s: %w", name, err)
	}
	return nil
}

// Destroy stops a domain at once (pulls the plug). A domain that is not
// running is left as it is.
func (c *Client) Destroy(name string) error {
	d, err := c.lookup(name)
	if err != nil {
		return err
	}
	if err := c.l.DomainDestroy(d); err != nil && !isNotRunning(err) {
		return fmt.Errorf("destroy domain %s: %w", name, err)
	}
	return nil
}

// Shutdown asks the guest to shut down (ACPI) and waits up to timeout for
// it to stop; then, if force is set, destroys it. It reports whether the
// domain had to be destroyed.
func (c *Client) Shutdown(ctx context.Context, name string, timeout time.Duration, force bool) (bool, error) {
	d, err := c.lookup(name)
	if err != nil {
		return false, err
	}
	if err := c.l.DomainShutdown(d); err != nil && !isNotRunning(err) {
		return false, fmt.Errorf("shut down domain %s: %w", name, err)
	}
	deadline := time.Now().Add(timeout)
	for {
		st, err := c.DomainState(name)
		if err != nil {
			return false, err
		}
		if !st.Active() {
			return false, nil
		}
		if time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	if !force {
		return false, fmt.Errorf("domain %s still running %s after shutdown", name, timeout)
	}
	return true, c.Destroy(name)
}

// Undefine removes a domain's persistent definition (and its managed-save
// image). A running domain is refused: it would linger as a transient one.
func (c *Client) Undefine(name string) error {
	d, err := c.lookup(name)
	if err != nil {
		return err
	}
	st, _, err := c.l.DomainGetState(d, 0)
	if err != nil {
		return fmt.Errorf("domain %s state: %w", name, err)
	}
	if stateOf(st).Active() {
		return fmt.Errorf("domain %s is %s: shut it down before undefining it", name, stateOf(st))
	}
	if err := c.l.DomainUndefineFlags(d, golibvirt.DomainUndefineManagedSave); err != nil {
		return fmt.Errorf("undefine domain %s: %w", name, err)
	}
	return nil
}

// ObjectInfo describes a pool or network.
type ObjectInfo struct {
	Name   string `json:"name"`
	UUID   string `json:"uuid"`
	Active bool   `json:"active"`
}

// Pool returns a storage pool; an error satisfying IsNotFound if absent.
func (c *Client) Pool(name string) (ObjectInfo, error) {
	p, err := c.l.StoragePoolLookupByName(name)
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("pool %s: %w", name, err)
	}
	a, err := c.l.StoragePoolIsActive(p)
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("pool %s: %w", name, err)
	}
	return ObjectInfo{Name: p.Name, UUID: uuidString(p.UUID), Active: a == 1}, nil
}

// Pools lists the storage pools.
func (c *Client) Pools() ([]ObjectInfo, error) {
	ps, _, err := c.l.ConnectListAllStoragePools(1, 0)
	if err != nil {
		return nil, fmt.Errorf("list pools: %w", err)
	}
	var out []ObjectInfo
	for _, p := range ps {
		i, err := c.Pool(p.Name)
		if err != nil && !IsNotFound(err) {
			return nil, err
		}
		if err == nil {
			out = append(out, i)
		}
	}
	return out, nil
}

// DefinePool defines a storage pool and returns its UUID.
func (c *Client) DefinePool(spec PoolSpec) (string, error) {
	x, err := spec.XML()
	if err != nil {
		return "", err
	}
	p, err := c.l.StoragePoolDefineXML(x, 0)
	if err != nil {
		return "", fmt.Errorf("define pool %s: %w", spec.Name, err)
	}
	return uuidString(p.UUID), nil
}

// StartPool starts (activates) a pool.
func (c *Client) StartPool(name string) error {
	p, err := c.l.StoragePoolLookupByName(name)
	if err != nil {
		return fmt.Errorf("pool %s: %w", name, err)
	}
	if err := c.l.StoragePoolCreate(p, 0); err != nil {
		return fmt.Errorf("start pool %s: %w", name, err)
	}
	return nil
}

// StopPool deactivates a pool (its data stays).
func (c *Client) StopPool(name string) error {
	p, err := c.l.StoragePoolLookupByName(name)
	if err != nil {
		return fmt.Errorf("pool %s: %w", name, err)
	}
	if a, err := c.l.StoragePoolIsActive(p); err == nil && a == 0 {
		return nil
	}
	if err := c.l.StoragePoolDestroy(p); err != nil {
		return fmt.Errorf("stop pool %s: %w", name, err)
	}
	return nil
}

// UndefinePool removes a pool's definition (not its data).
func (c *Client) UndefinePool(name string) error {
	p, err := c.l.StoragePoolLookupByName(name)
	if err != nil {
		return fmt.Errorf("pool %s: %w", name, err)
	}
	if err := c.l.StoragePoolUndefine(p); err != nil {
		return fmt.Errorf("undefine pool %s: %w", name, err)
	}
	return nil
}

// VolumeInfo describes a volume.
type VolumeInfo struct {
	Pool string `json:"pool"`
	Name string `json:"name"`
	Key  string `json:"key"`
}

// Volume looks up a volume in a pool.
func (c *Client) Volume(pool, name string) (VolumeInfo, error) {
	p, err := c.l.StoragePoolLookupByName(pool)
	if err != nil {
		return VolumeInfo{}, fmt.Errorf("pool %s: %w", pool, err)
	}
	v, err := c.l.StorageVolLookupByName(p, name)
	if err != nil {
		return VolumeInfo{}, fmt.Errorf("volume %s/%s: %w", pool, name, err)
	}
	return VolumeInfo{Pool: pool, Name: v.Name, Key: v.Key}, nil
}

// CreateVolume creates a volume in a pool.
func (c *Client) CreateVolume(pool string, spec VolumeSpec) (VolumeInfo, error) {
	x, err := spec.XML()
	if err != nil {
		return VolumeInfo{}, err
	}
	p, err := c.l.StoragePoolLookupByName(pool)
	if err != nil {
		return VolumeInfo{}, fmt.Errorf("pool %s: %w", pool, err)
	}
	v, err := c.l.StorageVolCreateXML(p, x, 0)
	if err != nil {
		return VolumeInfo{}, fmt.Errorf("create volume %s/%s: %w", pool, spec.Name, err)
	}
	return VolumeInfo{Pool: pool, Name: v.Name, Key: v.Key}, nil
}

// DeleteVolume deletes a volume and its data.
func (c *Client) DeleteVolume(pool, name string) error {
	p, err := c.l.StoragePoolLookupByName(pool)
	if err != nil {
		return fmt.Errorf("pool %s: %w", pool, err)
	}
	v, err := c.l.StorageVolLookupByName(p, name)
	if err != nil {
		return fmt.Errorf("volume %s/%s: %w", pool, name, err)
	}
	if err := c.l.StorageVolDelete(v, 0); err != nil {
		return fmt.Errorf("delete volume %s/%s: %w", pool, name, err)
	}
	return nil
}

// Network returns a network; an error satisfying IsNotFound if absent.
func (c *Client) Network(name string) (ObjectInfo, error) {
	n, err := c.l.NetworkLookupByName(name)
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("network %s: %w", name, err)
	}
	a, err := c.l.NetworkIsActive(n)
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("network %s: %w", name, err)
	}
	return ObjectInfo{Name: n.Name, UUID: uuidString(n.UUID), Active: a == 1}, nil
}

// Networks lists the networks.
func (c *Client) Networks() ([]ObjectInfo, error) {
	ns, _, err := c.l.ConnectListAllNetworks(1, 0)
	if err != nil {
		return nil, fmt.Errorf("list networks: %w", err)
	}
	var out []ObjectInfo
	for _, n := range ns {
		i, err := c.Network(n.Name)
		if err != nil && !IsNotFound(err) {
			return nil, err
		}
		if err == nil {
			out = append(out, i)
		}
	}
	return out, nil
}

// DefineNetwork defines a network and returns its UUID.
func (c *Client) DefineNetwork(spec NetworkSpec) (string, error) {
	x, err := spec.XML()
	if err != nil {
		return "", err
	}
	n, err := c.l.NetworkDefineXML(x)
	if err != nil {
		return "", fmt.Errorf("define network %s: %w", spec.Name, err)
	}
	return uuidString(n.UUID), nil
}

// StartNetwork starts a network.
func (c *Client) StartNetwork(name string) error {
	n, err := c.l.NetworkLookupByName(name)
	if err != nil {
		return fmt.Errorf("network %s: %w", name, err)
	}
	if err := c.l.NetworkCreate(n); err != nil {
		return fmt.Errorf("start network %s: %w", name, err)
	}
	return nil
}

// StopNetwork stops a network.
func (c *Client) StopNetwork(name string) error {
	n, err := c.l.NetworkLookupByName(name)
	if err != nil {
		return fmt.Errorf("network %s: %w", name, err)
	}
	if a, err := c.l.NetworkIsActive(n); err == nil && a == 0 {
		return nil
	}
	if err := c.l.NetworkDestroy(n); err != nil {
		return fmt.Errorf("stop network %s: %w", name, err)
	}
	return nil
}

// UndefineNetwork removes a network's definition.
func (c *Client) UndefineNetwork(name string) error {
	n, err := c.l.NetworkLookupByName(name)
	if err != nil {
		return fmt.Errorf("network %s: %w", name, err)
	}
	if err := c.l.NetworkUndefine(n); err != nil {
		return fmt.Errorf("undefine network %s: %w", name, err)
	}
	return nil
}
