package crypt

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/run"
)

// Resize is the crypt.resize step: resize an open LUKS mapping (after its
// device grew, or to shrink it below a file system already shrunk).
type Resize struct {
	Name       string     `json:"name" doc:"mapping name"`
	Size       string     `json:"size,omitempty" doc:"new size: 512MiB, 10G, 2048s (sectors); empty fills the device"`
	KeyFile    string     `json:"key_file,omitempty" doc:"key, if cryptsetup needs one (volume key in the kernel keyring)"`
	Passphrase run.Secret `json:"passphrase,omitempty" doc:"key (Go API)"`
}

// StepKind names the kind.
func (Resize) StepKind() string { return "crypt.resize" }

var sizeRe = regexp.MustCompile(`^([0-9]+)(s|[KMGT]i?B?|[KMGT]|B)?$`)

// ParseSectors parses a size (512MiB, 10G, 2048s, 1048576B; a bare number
// is bytes) into 512-byte sectors. It must be a whole number of sectors.
func ParseSectors(s string) (uint64, error) {
	m := sizeRe.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("size %q: want a number with a unit (512MiB, 10G, 2048s)", s)
	}
	n, err := strconv.ParseUint(m[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: %w", s, err)
	}
	if m[2] == "s" {
		if n == 0 {
			return 0, fmt.Errorf("size %q: zero", s)
		}
		return n, nil
	}
	mult := uint64(1)
	if u := m[2]; u != "" && u != "B" {
		mult = 1 << (10 * (1 + strings.IndexByte("KMGT", u[0])))
	}
	if n == 0 || n > (1<<63)/mult {
		return 0, fmt.Errorf("size %q: out of range", s)
	}
	b := n * mult
	if b%512 != 0 {
		return 0, fmt.Errorf("size %q: not a multiple of 512 bytes", s)
	}
	return b / 512, nil
}

// Validate checks the parameters without touching the system.
func (r Resize) Validate() error {
	if err := ValidName(r.Name); err != nil {
		return err
	}
	if r.Size != "" {
		if _, err := ParseSectors(r.Size); err != nil {
			return err
		}
	}
	return Key{r.KeyFile, r.Passphrase}.validate("resize", false)
}

// Resized is the size of a mapping after crypt.resize.
type Resized struct {
	Name    string `json:"name"`
	Sectors uint64 `json:"sectors" doc:"512-byte sectors"`
}

type resizeUndo struct {
	Sectors uint64 `json:"sectors"`
	UUID    string `json:"uuid"`
}

// Sectors returns the size of a block device in 512-byte sectors
// (`blockdev --getsz`).
func Sectors(ctx context.Context, r run.Runner, dev string) (uint64, error) {
	out, err := run.Output(ctx, r, "blockdev", "--getsz", dev)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("blockdev --getsz %s: %q: %w", dev, out, err)
	}
	return n, nil
}

func prepareResize(ctx context.Context, env *atomic.Env, r Resize) (atomic.Plan[resizeUndo, Resized], error) {
	var plan atomic.Plan[resizeUndo, Resized]
	k := Key{r.KeyFile, r.Passphrase}
	if k.set() {
		if err := k.usable(); err != nil {
			return plan, err
		}
	}
	m, err := Mapping(ctx, env.Runner, r.Name)
	if err != nil {
		return plan, invalid(err)
	}
	_, uuid, ok := m.LUKS()
	if !ok {
		return plan, invalid(fmt.Errorf("mapping %s is not a LUKS mapping (dm uuid %q)", r.Name, m.UUID))
	}
	cur, err := Sectors(ctx, env.Runner, mapperPath(r.Name))
	if err != nil {
		return plan, err
	}
	if r.Size != "" {
		want, _ := ParseSectors(r.Size)
		if want == cur {
			plan.Noop, plan.Result = true, Resized{Name: r.Name, Sectors: cur}
			return plan, nil
		}
	}
	plan.Undo = resizeUndo{Sectors: cur, UUID: uuid}
	return plan, nil
}

func resizeTo(ctx context.Context, env *atomic.Env, r Resize, sectors uint64) error {
	c := run.Cmd{Argv: []string{"cryptsetup", "resize"}, Kind: run.Mutation}
	if sectors != 0 {
		c.Argv = append(c.Argv, "--size", strconv.FormatUint(sectors, 10))
	}
	if k := (Key{r.KeyFile, r.Passphrase}); k.set() {
		if err := k.cmd(&c); err != nil {
			return err
		}
	}
	c.Argv = append(c.Argv, r.Name)
	_, err := env.Runner.Run(ctx, c)
	return classify(err)
}

func doResize(ctx context.Context, env *atomic.Env, r Resize, u resizeUndo) (Resized, error) {
	var want uint64
	if r.Size != "" {
		want, _ = ParseSectors(r.Size)
	}
	if err := resizeTo(ctx, env, r, want); err != nil {
		return Resized{}, err
	}
	if env.DryRun {
		return Resized{Name: r.Name, Sectors: want}, nil
	}
	n, err := Sectors(ctx, env.Runner, mapperPath(r.Name))
	return Resized{Name: r.Name, Sectors: n}, err
}

func undoResize(ctx context.Context, env *atomic.Env, r Resize, u resizeUndo, _ Resized) error {
	m, err := Mapping(ctx, env.Runner, r.Name)
	if errors.Is(err, ErrNoMapping) {
		return nil
	}
	if err != nil {
		return err
	}
	if _, uuid, _ := m.LUKS(); uuid != u.UUID {
		return nil // not our mapping any more
	}
	cur, err := Sectors(ctx, env.Runner, mapperPath(r.Name))
	if err != nil || cur == u.Sectors {
		return err
	}
	return resizeTo(ctx, env, r, u.Sectors)
}

func checkResize(ctx context.Context, env *atomic.Env, r Resize, u resizeUndo) (bool, Resized, error) {
	cur, err := Sectors(ctx, env.Runner, mapperPath(r.Name))
	if err != nil {
		return false, Resized{}, err
	}
	return cur != u.Sectors, Resized{Name: r.Name, Sectors: cur}, nil
}

func init() {
	atomic.Register(atomic.Def[Resize, resizeUndo, Resized]{
		Doc:     "resize an open LUKS mapping; undo resizes it back",
		Prepare: prepareResize,
		Do:      doResize,
		Undo:    undoResize,
		Check:   checkResize,
	})
}
