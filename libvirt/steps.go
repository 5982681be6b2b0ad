package libvirt

import (
	"context"
	"fmt"
	"time"

	"github.com/bofhkit/bofh/atomic"
)

func init() {
	atomic.Register(atomic.Def[DefineDomain, struct{}, Defined]{
		Doc:     "define a domain from a typed spec; undo destroys and undefines it (only the one this step defined)",
		Prepare: prepareDefineDomain, Do: doDefineDomain, Undo: undoDefineDomain, Check: checkDefineDomain,
	})
	atomic.Register(atomic.Def[StartDomain, struct{}, struct{}]{
		Doc:     "start a defined domain; undo destroys it",
		Prepare: prepareStart, Do: doStart, Undo: undoStart, Check: checkStart,
	})
	atomic.Register(atomic.Def[ShutdownDomain, struct{}, Stopped]{
		Doc:     "shut a domain down (ACPI), destroying it after the timeout; undo starts it again",
		Prepare: prepareShutdown, Do: doShutdown, Undo: undoStop, Check: checkStopped,
	})
	atomic.Register(atomic.Def[DestroyDomain, struct{}, struct{}]{
		Doc:     "destroy (power off) a running domain; undo starts it again",
		Prepare: prepareDestroy, Do: doDestroy, Undo: undoDestroy, Check: checkDestroyed,
	})
	atomic.Register(atomic.Def[UndefineDomain, struct{}, struct{}]{
		Doc:          "undefine a shut-off domain; no undo (a domain we did not define cannot be brought back exactly)",
		Irreversible: true,
		Prepare:      prepareUndefine, Do: doUndefine, Check: checkUndefine,
	})
	atomic.Register(atomic.Def[DefinePool, struct{}, Defined]{
		Doc:     "define a storage pool (dir or logical); undo stops and undefines it",
		Prepare: prepareDefinePool, Do: doDefinePool, Undo: undoDefinePool, Check: checkDefinePool,
	})
	atomic.Register(atomic.Def[StartPool, struct{}, struct{}]{
		Doc:     "start a storage pool; undo stops it",
		Prepare: prepareStartPool, Do: doStartPool, Undo: undoStartPool, Check: checkStartPool,
	})
	atomic.Register(atomic.Def[CreateVolume, struct{}, VolumeInfo]{
		Doc:     "create a volume in a storage pool; undo deletes it",
		Prepare: prepareCreateVolume, Do: doCreateVolume, Undo: undoCreateVolume, Check: checkCreateVolume,
	})
	atomic.Register(atomic.Def[DefineNetwork, struct{}, Defined]{
		Doc:     "define a network on a bridge; undo stops and undefines it",
		Prepare: prepareDefineNetwork, Do: doDefineNetwork, Undo: undoDefineNetwork, Check: checkDefineNetwork,
	})
	atomic.Register(atomic.Def[StartNetwork, struct{}, struct{}]{
		Doc:     "start a network; undo stops it",
		Prepare: prepareStartNetwork, Do: doStartNetwork, Undo: undoStartNetwork, Check: checkStartNetwork,
	})
}

// with dials, runs f and closes the connection.
func with(ctx context.Context, c Conn, f func(cl *Client) error) error {
	cl, err := Dial(ctx, c)
	if err != nil {
		return err
	}
	defer cl.Close()
	return f(cl)
}

// Defined is the result of a define step: the object's name and the UUID
// libvirt gave it. Undo acts only on an object with that UUID.
type Defined struct {
	Name string `json:"name"`
	UUID string `json:"uuid"`
}

// DefineDomain is the libvirt.domain.define step: define Spec persistently.
type DefineDomain struct {
	Conn
	Spec DomainSpec `json:"spec" doc:"the domain: name, vcpus, memory, disks, nics, console"`
}

// StepKind names the kind.
func (DefineDomain) StepKind() string { return "libvirt.domain.define" }

// Validate checks the parameters without touching the system.
func (p DefineDomain) Validate() error {
	if err := p.Conn.Validate(); err != nil {
		return err
	}
	return p.Spec.Validate()
}

func prepareDefineDomain(ctx context.Context, env *atomic.Env, p DefineDomain) (atomic.Plan[struct{}, Defined], error) {
	var plan atomic.Plan[struct{}, Defined]
	kib, _ := ParseSize(p.Spec.Memory)
	err := with(ctx, p.Conn, func(cl *Client) error {
		cur, err := cl.Domain(p.Spec.Name)
		if IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		if cur.VCPUs == p.Spec.VCPUs && cur.MemKiB == kib && cur.Title == p.Spec.Title {
			plan.Noop, plan.Result = true, Defined{Name: cur.Name, UUID: cur.UUID}
			return nil
		}
		return fmt.Errorf("domain %s already exists with %d vcpus and %d KiB; not redefining it", cur.Name, cur.VCPUs, cur.MemKiB)
	})
	return plan, err
}

func doDefineDomain(ctx context.Context, env *atomic.Env, p DefineDomain, _ struct{}) (Defined, error) {
	if env.Dry("define libvirt domain %s (%s)", p.Spec.Name, p.Conn.uri()) {
		return Defined{Name: p.Spec.Name}, nil
	}
	var r Defined
	err := with(ctx, p.Conn, func(cl *Client) error {
		u, err := cl.Define(p.Spec)
		r = Defined{Name: p.Spec.Name, UUID: u}
		return err
	})
	return r, err
}

func checkDefineDomain(ctx context.Context, _ *atomic.Env, p DefineDomain, _ struct{}) (bool, Defined, error) {
	var r Defined
	var ok bool
	err := with(ctx, p.Conn, func(cl *Client) error {
		cur, err := cl.Domain(p.Spec.Name)
		if IsNotFound(err) {
			return nil
		}
		ok, r = err == nil, Defined{Name: cur.Name, UUID: cur.UUID}
		return err
	})
	return ok, r, err
}

func undoDefineDomain(ctx context.Context, env *atomic.Env, p DefineDomain, _ struct{}, r Defined) error {
	return with(ctx, p.Conn, func(cl *Client) error {
		cur, err := cl.Domain(p.Spec.Name)
		if IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		if r.UUID != "" && cur.UUID != r.UUID {
			return fmt.Errorf("domain %s now has UUID %s, not the %s this step defined; leaving it alone", p.Spec.Name, cur.UUID, r.UUID)
		}
		if cur.State.Active() {
			if err := cl.Destroy(p.Spec.Name); err != nil && !IsNotFound(err) {
				return err
			}
		}
		if err := cl.Undefine(p.Spec.Name); err != nil && !IsNotFound(err) {
			return err
		}
		return nil
	})
}

// DomainRef names an existing domain.
type DomainRef struct {
	Conn
	Name string `json:"name" doc:"domain name"`
}

// Validate checks the parameters without touching the system.
func (p DomainRef) Validate() error {
	if err := p.Conn.Validate(); err != nil {
		return err
	}
	return ValidName("domain", p.Name)
}

// state returns the domain's state; an absent domain is an error unless
// this is a dry run (an earlier step would have defined it).
func (p DomainRef) state(ctx context.Context, env *atomic.Env) (State, error) {
	var st State
	err := with(ctx, p.Conn, func(cl *Client) error {
		var err error
		st, err = cl.DomainState(p.Name)
		return err
	})
	if err == nil && st == StateAbsent && !env.DryRun {
		err = fmt.Errorf("domain %s: no such domain", p.Name)
	}
	return st, err
}

// StartDomain is the libvirt.domain.start step.
type StartDomain DomainRef

// StepKind names the kind.
func (StartDomain) StepKind() string { return "libvirt.domain.start" }

// Validate checks the parameters without touching the system.
func (p StartDomain) Validate() error { return DomainRef(p).Validate() }

func prepareStart(ctx context.Context, env *atomic.Env, p StartDomain) (atomic.Plan[struct{}, struct{}], error) {
	var plan atomic.Plan[struct{}, struct{}]
	st, err := DomainRef(p).state(ctx, env)
	plan.Noop = err == nil && st.Active()
	return plan, err
}

func doStart(ctx context.Context, env *atomic.Env, p StartDomain, _ struct{}) (struct{}, error) {
	if env.Dry("start libvirt domain %s", p.Name) {
		return struct{}{}, nil
	}
	return struct{}{}, with(ctx, p.Conn, func(cl *Client) error { return cl.Start(p.Name) })
}

func undoStart(ctx context.Context, env *atomic.Env, p StartDomain, _ struct{}, _ struct{}) error {
	return with(ctx, p.Conn, func(cl *Client) error {
		if err := cl.Destroy(p.Name); err != nil && !IsNotFound(err) {
			return err
		}
		return nil
	})
}

func checkStart(ctx context.Context, env *atomic.Env, p StartDomain, _ struct{}) (bool, struct{}, error) {
	st, err := DomainRef(p).state(ctx, env)
	return err == nil && st.Active(), struct{}{}, err
}

// ShutdownDomain is the libvirt.domain.shutdown step.
type ShutdownDomain struct {
	DomainRef
	Timeout string `json:"timeout,omitempty" doc:"how long to wait for the guest before destroying it (default 60s)"`
}

// StepKind names the kind.
func (ShutdownDomain) StepKind() string { return "libvirt.domain.shutdown" }

// Validate checks the parameters without touching the system.
func (p ShutdownDomain) Validate() error {
	if err := p.DomainRef.Validate(); err != nil {
		return err
	}
	_, err := p.timeout()
	return err
}

func (p ShutdownDomain) timeout() (time.Duration, error) {
	if p.Timeout == "" {
		return time.Minute, nil
	}
	d, err := time.ParseDuration(p.Timeout)
	if err != nil || d <= 0 || d > 24*time.Hour {
		return 0, fmt.Errorf("timeout %q: want a positive duration up to 24h (90s, 5m)", p.Timeout)
	}
	return d, nil
}

// Stopped is the result of libvirt.domain.shutdown.
type Stopped struct {
	// Destroyed says the guest did not stop in time and was destroyed.
	Destroyed bool `json:"destroyed"`
}

func prepareShutdown(ctx context.Context, env *atomic.Env, p ShutdownDomain) (atomic.Plan[struct{}, Stopped], error) {
	var plan atomic.Plan[struct{}, Stopped]
	st, err := p.state(ctx, env)
	plan.Noop = err == nil && !st.Active() && st != StateAbsent
	return plan, err
}

func doShutdown(ctx context.Context, env *atomic.Env, p ShutdownDomain, _ struct{}) (Stopped, error) {
	t, _ := p.timeout()
	if env.Dry("shut down libvirt domain %s (destroy after %s)", p.Name, t) {
		return Stopped{}, nil
	}
	var r Stopped
	err := with(ctx, p.Conn, func(cl *Client) error {
		var err error
		r.Destroyed, err = cl.Shutdown(ctx, p.Name, t, true)
		return err
	})
	return r, err
}

func restart(ctx context.Context, c Conn, name string) error {
	return with(ctx, c, func(cl *Client) error {
		st, err := cl.DomainState(name)
		if err != nil {
			return err
		}
		if st == StateAbsent {
			return fmt.Errorf("domain %s no longer exists: cannot start it again", name)
		}
		if st.Active() {
			return nil
		}
		return cl.Start(name)
	})
}

func undoStop(ctx context.Context, _ *atomic.Env, p ShutdownDomain, _ struct{}, _ Stopped) error {
	return restart(ctx, p.Conn, p.Name)
}

func checkStopped(ctx context.Context, env *atomic.Env, p ShutdownDomain, _ struct{}) (bool, Stopped, error) {
	st, err := p.state(ctx, env)
	return err == nil && !st.Active(), Stopped{}, err
}

// DestroyDomain is the libvirt.domain.destroy step: power off at once.
type DestroyDomain DomainRef

// StepKind names the kind.
func (DestroyDomain) StepKind() string { return "libvirt.domain.destroy" }

// Validate checks the parameters without touching the system.
func (p DestroyDomain) Validate() error { return DomainRef(p).Validate() }

func prepareDestroy(ctx context.Context, env *atomic.Env, p DestroyDomain) (atomic.Plan[struct{}, struct{}], error) {
	var plan atomic.Plan[struct{}, struct{}]
	st, err := DomainRef(p).state(ctx, env)
	plan.Noop = err == nil && !st.Active() && st != StateAbsent
	return plan, err
}

func doDestroy(ctx context.Context, env *atomic.Env, p DestroyDomain, _ struct{}) (struct{}, error) {
	if env.Dry("destroy libvirt domain %s", p.Name) {
		return struct{}{}, nil
	}
	return struct{}{}, with(ctx, p.Conn, func(cl *Client) error { return cl.Destroy(p.Name) })
}

func undoDestroy(ctx context.Context, _ *atomic.Env, p DestroyDomain, _ struct{}, _ struct{}) error {
	return restart(ctx, p.Conn, p.Name)
}

func checkDestroyed(ctx context.Context, env *atomic.Env, p DestroyDomain, _ struct{}) (bool, struct{}, error) {
	st, err := DomainRef(p).state(ctx, env)
	return err == nil && !st.Active(), struct{}{}, err
}

// UndefineDomain is the libvirt.domain.undefine step. It is irreversible
// and runs at commit: a domain bofh did not define cannot be brought back
// exactly (NVRAM, managed save, UUID users), so it is removed only once
// every reversible step succeeded. To remove a domain this transaction
// defined, roll the transaction back instead.
type UndefineDomain DomainRef

// StepKind names the kind.
func (UndefineDomain) StepKind() string { return "libvirt.domain.undefine" }

// Validate checks the parameters without touching the system.
func (p UndefineDomain) Validate() error { return DomainRef(p).Validate() }

func prepareUndefine(ctx context.Context, env *atomic.Env, p UndefineDomain) (atomic.Plan[struct{}, struct{}], error) {
	var plan atomic.Plan[struct{}, struct{}]
	_, err := DomainRef(p).state(ctx, env)
	return plan, err
}

func doUndefine(ctx context.Context, env *atomic.Env, p UndefineDomain, _ struct{}) (struct{}, error) {
	if env.Dry("undefine libvirt domain %s", p.Name) {
		return struct{}{}, nil
	}
	return struct{}{}, with(ctx, p.Conn, func(cl *Client) error { return cl.Undefine(p.Name) })
}

func checkUndefine(ctx context.Context, env *atomic.Env, p UndefineDomain, _ struct{}) (bool, struct{}, error) {
	var gone bool
	err := with(ctx, p.Conn, func(cl *Client) error {
		st, err := cl.DomainState(p.Name)
		gone = st == StateAbsent
		return err
	})
	return gone, struct{}{}, err
}

// DefinePool is the libvirt.pool.define step.
type DefinePool struct {
	Conn
	Spec PoolSpec `json:"spec" doc:"the pool: name, type (dir, logical), path"`
}

// StepKind names the kind.
func (DefinePool) StepKind() string { return "libvirt.pool.define" }

// Validate checks the parameters without touching the system.
func (p DefinePool) Validate() error {
	if err := p.Conn.Validate(); err != nil {
		return err
	}
	return p.Spec.Validate()
}

func prepareDefinePool(ctx context.Context, _ *atomic.Env, p DefinePool) (atomic.Plan[struct{}, Defined], error) {
	var plan atomic.Plan[struct{}, Defined]
	err := with(ctx, p.Conn, func(cl *Client) error {
		_, err := cl.Pool(p.Spec.Name)
		if IsNotFound(err) {
			return nil
		}
		if err == nil {
			return fmt.Errorf("pool %s already exists; not redefining it", p.Spec.Name)
		}
		return err
	})
	return plan, err
}

func doDefinePool(ctx context.Context, env *atomic.Env, p DefinePool, _ struct{}) (Defined, error) {
	if env.Dry("define libvirt pool %s (%s %s)", p.Spec.Name, p.Spec.Type, p.Spec.Path) {
		return Defined{Name: p.Spec.Name}, nil
	}
	r := Defined{Name: p.Spec.Name}
	err := with(ctx, p.Conn, func(cl *Client) error {
		var err error
		r.UUID, err = cl.DefinePool(p.Spec)
		return err
	})
	return r, err
}

func checkDefinePool(ctx context.Context, _ *atomic.Env, p DefinePool, _ struct{}) (bool, Defined, error) {
	var r Defined
	var ok bool
	err := with(ctx, p.Conn, func(cl *Client) error {
		i, err := cl.Pool(p.Spec.Name)
		if IsNotFound(err) {
			return nil
		}
		ok, r = err == nil, Defined{Name: i.Name, UUID: i.UUID}
		return err
	})
	return ok, r, err
}

func undoDefinePool(ctx context.Context, _ *atomic.Env, p DefinePool, _ struct{}, r Defined) error {
	return with(ctx, p.Conn, func(cl *Client) error {
		i, err := cl.Pool(p.Spec.Name)
		if IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		if r.UUID != "" && i.UUID != r.UUID {
			return fmt.Errorf("pool %s now has UUID %s, not the %s this step defined; leaving it alone", p.Spec.Name, i.UUID, r.UUID)
		}
		if err := cl.StopPool(p.Spec.Name); err != nil && !IsNotFound(err) {
			return err
		}
		if err := cl.UndefinePool(p.Spec.Name); err != nil && !IsNotFound(err) {
			return err
		}
		return nil
	})
}

// PoolRef names a storage pool.
type PoolRef struct {
	Conn
	Name string `json:"name" doc:"pool name"`
}

// StartPool is the libvirt.pool.start step.
type StartPool PoolRef

// StepKind names the kind.
func (StartPool) StepKind() string { return "libvirt.pool.start" }

// Validate checks the parameters without touching the system.
func (p StartPool) Validate() error {
	if err := p.Conn.Validate(); err != nil {
		return err
	}
	return ValidName("pool", p.Name)
}

func poolActive(ctx context.Context, env *atomic.Env, c Conn, name string) (bool, error) {
	var a bool
	err := with(ctx, c, func(cl *Client) error {
		i, err := cl.Pool(name)
		if IsNotFound(err) && env.DryRun {
			return nil
		}
		a = i.Active
		return err
	})
	return a, err
}

func prepareStartPool(ctx context.Context, env *atomic.Env, p StartPool) (atomic.Plan[struct{}, struct{}], error) {
	a, err := poolActive(ctx, env, p.Conn, p.Name)
	return atomic.Plan[struct{}, struct{}]{Noop: a}, err
}

func doStartPool(ctx context.Context, env *atomic.Env, p StartPool, _ struct{}) (struct{}, error) {
	if env.Dry("start libvirt pool %s", p.Name) {
		return struct{}{}, nil
	}
	return struct{}{}, with(ctx, p.Conn, func(cl *Client) error { return cl.StartPool(p.Name) })
}

func undoStartPool(ctx context.Context, _ *atomic.Env, p StartPool, _ struct{}, _ struct{}) error {
	return with(ctx, p.Conn, func(cl *Client) error {
		if err := cl.StopPool(p.Name); err != nil && !IsNotFound(err) {
			return err
		}
		return nil
	})
}

func checkStartPool(ctx context.Context, env *atomic.Env, p StartPool, _ struct{}) (bool, struct{}, error) {
	a, err := poolActive(ctx, env, p.Conn, p.Name)
	return a, struct{}{}, err
}

// CreateVolume is the libvirt.volume.create step.
type CreateVolume struct {
	Conn
	Pool string     `json:"pool" doc:"pool name"`
	Spec VolumeSpec `json:"spec" doc:"the volume: name, capacity, format"`
}

// StepKind names the kind.
func (CreateVolume) StepKind() string { return "libvirt.volume.create" }

// Validate checks the parameters without touching the system.
func (p CreateVolume) Validate() error {
	if err := p.Conn.Validate(); err != nil {
		return err
	}
	if err := ValidName("pool", p.Pool); err != nil {
		return err
	}
	return p.Spec.Validate()
}

func prepareCreateVolume(ctx context.Context, _ *atomic.Env, p CreateVolume) (atomic.Plan[struct{}, VolumeInfo], error) {
	var plan atomic.Plan[struct{}, VolumeInfo]
	err := with(ctx, p.Conn, func(cl *Client) error {
		_, err := cl.Volume(p.Pool, p.Spec.Name)
		if err == nil {
			return fmt.Errorf("volume %s/%s already exists; not touching it", p.Pool, p.Spec.Name)
		}
		if IsNotFound(err) {
			return nil
		}
		return err
	})
	return plan, err
}

func doCreateVolume(ctx context.Context, env *atomic.Env, p CreateVolume, _ struct{}) (VolumeInfo, error) {
	if env.Dry("create libvirt volume %s/%s (%s)", p.Pool, p.Spec.Name, p.Spec.Capacity) {
		return VolumeInfo{Pool: p.Pool, Name: p.Spec.Name}, nil
	}
	var r VolumeInfo
	err := with(ctx, p.Conn, func(cl *Client) error {
		var err error
		r, err = cl.CreateVolume(p.Pool, p.Spec)
		return err
	})
	return r, err
}

func checkCreateVolume(ctx context.Context, _ *atomic.Env, p CreateVolume, _ struct{}) (bool, VolumeInfo, error) {
	var r VolumeInfo
	var ok bool
	err := with(ctx, p.Conn, func(cl *Client) error {
		v, err := cl.Volume(p.Pool, p.Spec.Name)
		if IsNotFound(err) {
			return nil
		}
		ok, r = err == nil, v
		return err
	})
	return ok, r, err
}

func undoCreateVolume(ctx context.Context, _ *atomic.Env, p CreateVolume, _ struct{}, r VolumeInfo) error {
	return with(ctx, p.Conn, func(cl *Client) error {
		v, err := cl.Volume(p.Pool, p.Spec.Name)
		if IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		if r.Key != "" && v.Key != r.Key {
			return fmt.Errorf("volume %s/%s now has key %s, not the %s this step created; leaving it alone", p.Pool, p.Spec.Name, v.Key, r.Key)
		}
		if err := cl.DeleteVolume(p.Pool, p.Spec.Name); err != nil && !IsNotFound(err) {
			return err
		}
		return nil
	})
}

// DefineNetwork is the libvirt.network.define step.
type DefineNetwork struct {
	Conn
	Spec NetworkSpec `json:"spec" doc:"the network: name, bridge, forward, address"`
}

// StepKind names the kind.
func (DefineNetwork) StepKind() string { return "libvirt.network.define" }

// Validate checks the parameters without touching the system.
func (p DefineNetwork) Validate() error {
	if err := p.Conn.Validate(); err != nil {
		return err
	}
	return p.Spec.Validate()
}

func prepareDefineNetwork(ctx context.Context, _ *atomic.Env, p DefineNetwork) (atomic.Plan[struct{}, Defined], error) {
	var plan atomic.Plan[struct{}, Defined]
	err := with(ctx, p.Conn, func(cl *Client) error {
		_, err := cl.Network(p.Spec.Name)
		if IsNotFound(err) {
			return nil
		}
		if err == nil {
			return fmt.Errorf("network %s already exists; not redefining it", p.Spec.Name)
		}
		return err
	})
	return plan, err
}

func doDefineNetwork(ctx context.Context, env *atomic.Env, p DefineNetwork, _ struct{}) (Defined, error) {
	if env.Dry("define libvirt network %s (bridge %s)", p.Spec.Name, p.Spec.Bridge) {
		return Defined{Name: p.Spec.Name}, nil
	}
	r := Defined{Name: p.Spec.Name}
	err := with(ctx, p.Conn, func(cl *Client) error {
		var err error
		r.UUID, err = cl.DefineNetwork(p.Spec)
		return err
	})
	return r, err
}

func checkDefineNetwork(ctx context.Context, _ *atomic.Env, p DefineNetwork, _ struct{}) (bool, Defined, error) {
	var r Defined
	var ok bool
	err := with(ctx, p.Conn, func(cl *Client) error {
		i, err := cl.Network(p.Spec.Name)
		if IsNotFound(err) {
			return nil
		}
		ok, r = err == nil, Defined{Name: i.Name, UUID: i.UUID}
		return err
	})
	return ok, r, err
}

func undoDefineNetwork(ctx context.Context, _ *atomic.Env, p DefineNetwork, _ struct{}, r Defined) error {
	return with(ctx, p.Conn, func(cl *Client) error {
		i, err := cl.Network(p.Spec.Name)
		if IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		if r.UUID != "" && i.UUID != r.UUID {
			return fmt.Errorf("network %s now has UUID %s, not the %s this step defined; leaving it alone", p.Spec.Name, i.UUID, r.UUID)
		}
		if err := cl.StopNetwork(p.Spec.Name); err != nil && !IsNotFound(err) {
			return err
		}
		if err := cl.UndefineNetwork(p.Spec.Name); err != nil && !IsNotFound(err) {
			return err
		}
		return nil
	})
}

// NetworkRef names a network.
type NetworkRef struct {
	Conn
	Name string `json:"name" doc:"network name"`
}

// StartNetwork is the libvirt.network.start step.
type StartNetwork NetworkRef

// StepKind names the kind.
func (StartNetwork) StepKind() string { return "libvirt.network.start" }

// Validate checks the parameters without touching the system.
func (p StartNetwork) Validate() error {
	if err := p.Conn.Validate(); err != nil {
		return err
	}
	return ValidName("network", p.Name)
}

func netActive(ctx context.Context, env *atomic.Env, c Conn, name string) (bool, error) {
	var a bool
	err := with(ctx, c, func(cl *Client) error {
		i, err := cl.Network(name)
		if IsNotFound(err) && env.DryRun {
			return nil
		}
		a = i.Active
		return err
	})
	return a, err
}

func prepareStartNetwork(ctx context.Context, env *atomic.Env, p StartNetwork) (atomic.Plan[struct{}, struct{}], error) {
	a, err := netActive(ctx, env, p.Conn, p.Name)
	return atomic.Plan[struct{}, struct{}]{Noop: a}, err
}

func doStartNetwork(ctx context.Context, env *atomic.Env, p StartNetwork, _ struct{}) (struct{}, error) {
	if env.Dry("start libvirt network %s", p.Name) {
		return struct{}{}, nil
	}
	return struct{}{}, with(ctx, p.Conn, func(cl *Client) error { return cl.StartNetwork(p.Name) })
}

func undoStartNetwork(ctx context.Context, _ *atomic.Env, p StartNetwork, _ struct{}, _ struct{}) error {
	return with(ctx, p.Conn, func(cl *Client) error {
		if err := cl.StopNetwork(p.Name); err != nil && !IsNotFound(err) {
			return err
		}
		return nil
	})
}

func checkStartNetwork(ctx context.Context, env *atomic.Env, p StartNetwork, _ struct{}) (bool, struct{}, error) {
	a, err := netActive(ctx, env, p.Conn, p.Name)
	return a, struct{}{}, err
}
