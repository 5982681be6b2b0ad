package atomic

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"
)

// Params is implemented by every step's parameter struct: the struct is the
// step, as data. StepKind names the registered kind ("lvm.lv.create").
// A Params may also implement Validate() error, which the engine calls
// before anything runs.
type Params interface {
	StepKind() string
}

// Validator is implemented by parameters that can check themselves without
// touching the system.
type Validator interface {
	Validate() error
}

// Plan is what a step's Prepare found before acting.
type Plan[U, R any] struct {
	// Undo holds what the undo needs (the previous state); it is journaled
	// in the intent record before Do runs.
	Undo U
	// Noop says the effect is already present: the step does nothing and
	// its undo is a no-op ("only undo what you did").
	Noop bool
	// Result is the step's result when Noop is set (e.g. the existing LV).
	Result R
}

// Def defines a step kind. P is the parameter struct (which names the kind
// through its StepKind method), U the undo data worked out before acting,
// R the result. Register it once, from an init function.
type Def[P Params, U any, R any] struct {
	// Doc is one line saying what the step does and how it is undone.
	Doc string
	// Irreversible steps have no undo; they run only at commit, after
	// every reversible step succeeded.
	Irreversible bool
	// Prepare probes the current state and works out the undo. It runs
	// before the intent record is written and must not change anything.
	// Nil means "no undo data, never a no-op".
	Prepare func(ctx context.Context, env *Env, p P) (Plan[U, R], error)
	// Do performs the effect.
	Do func(ctx context.Context, env *Env, p P, u U) (R, error)
	// Undo reverses the effect. It must be idempotent: undoing what is
	// already gone is success. r is the zero R when the step's outcome
	// was uncertain and it has no Check.
	Undo func(ctx context.Context, env *Env, p P, u U, r R) error
	// Check reports whether the effect is present, and if so the result
	// Do would have returned. Optional; used to resolve a step that was
	// interrupted between its intent and done records.
	Check func(ctx context.Context, env *Env, p P, u U) (bool, R, error)
	// Cleanup removes what an interrupted Do may have started without
	// its effect taking place (a temporary file beside the target). It is
	// called instead of Undo when Check finds an uncertain step's effect
	// absent. Optional; must be idempotent.
	Cleanup func(ctx context.Context, env *Env, p P, u U) error
}

// kind is a registered step kind with its types erased.
type kind interface {
	name() string
	info() KindInfo
	decodeParams(raw []byte) (Params, error)
	validate(p Params) error
	prepare(ctx context.Context, env *Env, p Params) (undo, result []byte, noop bool, err error)
	do(ctx context.Context, env *Env, p Params, undo []byte) ([]byte, error)
	undo(ctx context.Context, env *Env, p Params, undo, result []byte) error
	check(ctx context.Context, env *Env, p Params, undo []byte) (bool, []byte, bool, error)
	cleanup(ctx context.Context, env *Env, p Params, undo []byte) error
	irreversible() bool
	resultFields() map[string]bool
	resultType() reflect.Type
}

type def[P Params, U any, R any] struct {
	k    string
	d    Def[P, U, R]
	rfld map[string]bool
}

var (
	regMu    sync.RWMutex
	registry = map[string]kind{}
)

// Register adds a step kind to the registry. It panics on a duplicate
// kind or on a reversible kind without Undo: both are programming errors.
func Register[P Params, U any, R any](d Def[P, U, R]) {
	var zero P
	name := zero.StepKind()
	if d.Do == nil {
		panic("atomic: step kind " + name + " has no Do")
	}
	if d.Undo == nil && !d.Irreversible {
		panic("atomic: reversible step kind " + name + " has no Undo")
	}
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := registry[name]; dup {
		panic("atomic: step kind " + name + " registered twice")
	}
	registry[name] = &def[P, U, R]{k: name, d: d, rfld: jsonFields(reflect.TypeFor[R]())}
}

func lookup(name string) (kind, error) {
	regMu.RLock()
	defer regMu.RUnlock()
	k, ok := registry[name]
	if !ok {
		return nil, fmt.Errorf("%w: unknown step kind %q (see 'bofh step list')", ErrInvalid, name)
	}
	return k, nil
}

func (d *def[P, U, R]) name() string       { return d.k }
func (d *def[P, U, R]) irreversible() bool { return d.d.Irreversible }
func (d *def[P, U, R]) resultFields() map[string]bool {
	return d.rfld
}
func (d *def[P, U, R]) resultType() reflect.Type { return reflect.TypeFor[R]() }

// fieldPath checks that path (JSON field names) leads somewhere in a
// value of type t: through structs by their JSON names and through maps
// by any key. It names the first element that cannot be followed.
func fieldPath(t reflect.Type, path []string) error {
	for i, f := range path {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		switch t.Kind() {
		case reflect.Interface:
			return nil // known only at run time
		case reflect.Map:
			t = t.Elem()
		case reflect.Struct:
			ft, ok := jsonField(t, f)
			if !ok {
				return fmt.Errorf("has no field %q", strings.Join(path[:i+1], "."))
			}
			t = ft
		default:
			return fmt.Errorf("%q is a %s, not an object", strings.Join(path[:i], "."), typeName(t))
		}
	}
	return nil
}

// jsonField finds the struct field (embedded structs flattened) whose
// JSON name is name.
func jsonField(t reflect.Type, name string) (reflect.Type, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		n, _ := jsonName(f)
		if n == "-" {
			continue
		}
		if f.Anonymous && n == "" {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				if got, ok := jsonField(ft, name); ok {
					return got, true
				}
			}
			continue
		}
		if n == "" {
			n = f.Name
		}
		if n == name {
			return f.Type, true
		}
	}
	return nil, false
}

func (d *def[P, U, R]) decodeParams(raw []byte) (Params, error) {
	var p P
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("%w: %s parameters: %v", ErrInvalid, d.k, err)
	}
	return p, nil
}

func (d *def[P, U, R]) validate(p Params) error {
	if v, ok := p.(Validator); ok {
		if err := v.Validate(); err != nil {
			if errors.Is(err, ErrInvalid) {
				return err
			}
			return fmt.Errorf("%w: %s: %w", ErrInvalid, d.k, err)
		}
	}
	return nil
}

func (d *def[P, U, R]) cast(p Params) (P, error) {
	if v, ok := p.(P); ok {
		return v, nil
	}
	if v, ok := any(p).(*P); ok && v != nil {
		return *v, nil
	}
	var zero P
	return zero, fmt.Errorf("atomic: %s: parameters of type %T, want %T", d.k, p, zero)
}

func (d *def[P, U, R]) prepare(ctx context.Context, env *Env, p Params) ([]byte, []byte, bool, error) {
	pp, err := d.cast(p)
	if err != nil {
		return nil, nil, false, err
	}
	var plan Plan[U, R]
	if d.d.Prepare != nil {
		plan, err = d.d.Prepare(ctx, env, pp)
		if err != nil {
			return nil, nil, false, err
		}
	}
	u, err := json.Marshal(plan.Undo)
	if err != nil {
		return nil, nil, false, fmt.Errorf("encode undo of %s: %w", d.k, err)
	}
	var r []byte
	if plan.Noop {
		if r, err = json.Marshal(plan.Result); err != nil {
			return nil, nil, false, fmt.Errorf("encode result of %s: %w", d.k, err)
		}
	}
	return u, r, plan.Noop, nil
}

func (d *def[P, U, R]) do(ctx context.Context, env *Env, p Params, undo []byte) ([]byte, error) {
	pp, err := d.cast(p)
	if err != nil {
		return nil, err
	}
	var u U
	if err := unmarshalOpt(undo, &u); err != nil {
		return nil, fmt.Errorf("decode undo of %s: %w", d.k, err)
	}
	r, err := d.d.Do(ctx, env, pp, u)
	if err != nil {
		return nil, err
	}
	out, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode result of %s: %w", d.k, err)
	}
	return out, nil
}

func (d *def[P, U, R]) undo(ctx context.Context, env *Env, p Params, undo, result []byte) error {
	if d.d.Undo == nil {
		return fmt.Errorf("%s is irreversible", d.k)
	}
	pp, err := d.cast(p)
	if err != nil {
		return err
	}
	var u U
	var r R
	if err := unmarshalOpt(undo, &u); err != nil {
		return fmt.Errorf("decode undo of %s: %w", d.k, err)
	}
	if err := unmarshalOpt(result, &r); err != nil {
		return fmt.Errorf("decode result of %s: %w", d.k, err)
	}
	return d.d.Undo(ctx, env, pp, u, r)
}

// check returns (present, result, hasCheck, err).
func (d *def[P, U, R]) cleanup(ctx context.Context, env *Env, p Params, undo []byte) error {
	if d.d.Cleanup == nil {
		return nil
	}
	pp, err := d.cast(p)
	if err != nil {
		return err
	}
	var u U
	if err := unmarshalOpt(undo, &u); err != nil {
		return fmt.Errorf("decode undo of %s: %w", d.k, err)
	}
	return d.d.Cleanup(ctx, env, pp, u)
}

func (d *def[P, U, R]) check(ctx context.Context, env *Env, p Params, undo []byte) (bool, []byte, bool, error) {
	if d.d.Check == nil {
		return false, nil, false, nil
	}
	pp, err := d.cast(p)
	if err != nil {
		return false, nil, true, err
	}
	var u U
	if err := unmarshalOpt(undo, &u); err != nil {
		return false, nil, true, fmt.Errorf("decode undo of %s: %w", d.k, err)
	}
	ok, r, err := d.d.Check(ctx, env, pp, u)
	if err != nil || !ok {
		return false, nil, true, err
	}
	out, err := json.Marshal(r)
	if err != nil {
		return false, nil, true, fmt.Errorf("encode result of %s: %w", d.k, err)
	}
	return true, out, true, nil
}

func unmarshalOpt(raw []byte, v any) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	return json.Unmarshal(raw, v)
}

// KindInfo describes a registered step kind for 'bofh step list'.
type KindInfo struct {
	Kind         string      `json:"kind"`
	Doc          string      `json:"doc"`
	Irreversible bool        `json:"irreversible,omitempty"`
	Checkable    bool        `json:"checkable"`
	Params       []FieldInfo `json:"params"`
	Result       []FieldInfo `json:"result"`
}

// FieldInfo describes one parameter or result field.
type FieldInfo struct {
	Name     string `json:"name"`
	Type     string `json:"type"`
	Required bool   `json:"required"`
	Doc      string `json:"doc,omitempty"`
}

func (d *def[P, U, R]) info() KindInfo {
	return KindInfo{
		Kind:         d.k,
		Doc:          d.d.Doc,
		Irreversible: d.d.Irreversible,
		Checkable:    d.d.Check != nil,
		Params:       fieldsOf(reflect.TypeFor[P]()),
		Result:       fieldsOf(reflect.TypeFor[R]()),
	}
}

// Kinds lists every registered step kind, sorted by name.
func Kinds() []KindInfo {
	regMu.RLock()
	defer regMu.RUnlock()
	out := make([]KindInfo, 0, len(registry))
	for _, k := range registry {
		out = append(out, k.info())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Kind < out[j].Kind })
	return out
}

// Kind returns the description of one step kind.
func Kind(name string) (KindInfo, error) {
	k, err := lookup(name)
	if err != nil {
		return KindInfo{}, err
	}
	return k.info(), nil
}

func fieldsOf(t reflect.Type) []FieldInfo {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		if t.Kind() == reflect.Interface || t == reflect.TypeFor[struct{}]() {
			return nil
		}
		return []FieldInfo{{Name: "(value)", Type: typeName(t)}}
	}
	var out []FieldInfo
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts := jsonName(f)
		if name == "-" {
			continue
		}
		if f.Anonymous && name == "" {
			out = append(out, fieldsOf(f.Type)...)
			continue
		}
		if name == "" {
			name = f.Name
		}
		out = append(out, FieldInfo{
			Name:     name,
			Type:     typeName(f.Type),
			Required: !strings.Contains(opts, "omitempty") && !strings.Contains(opts, "omitzero"),
			Doc:      f.Tag.Get("doc"),
		})
	}
	return out
}

func jsonName(f reflect.StructField) (string, string) {
	tag := f.Tag.Get("json")
	name, opts, _ := strings.Cut(tag, ",")
	return name, opts
}

func jsonFields(t reflect.Type) map[string]bool {
	m := map[string]bool{}
	for _, f := range fieldsOf(t) {
		m[f.Name] = true
	}
	return m
}

func typeName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Pointer:
		return typeName(t.Elem())
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return "bytes"
		}
		return "[]" + typeName(t.Elem())
	case reflect.Map:
		return "map[" + typeName(t.Key()) + "]" + typeName(t.Elem())
	case reflect.Struct:
		if t.Name() == "Time" {
			return "time"
		}
		return "object"
	case reflect.String:
		if t.Name() == "Secret" {
			return "secret"
		}
		return "string"
	case reflect.Bool:
		return "bool"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "int"
	case reflect.Float32, reflect.Float64:
		return "number"
	}
	return t.Kind().String()
}
