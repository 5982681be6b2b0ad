package atomic

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode"

	"gopkg.in/yaml.v3"
)

// Recipe is a transaction written as data: a name and steps, each a
// registered kind with parameters. A later step may use an earlier step's
// result as ${id.field}.
type Recipe struct {
	Name  string       `json:"name" yaml:"name"`
	Steps []RecipeStep `json:"steps" yaml:"steps"`
}

// RecipeStep is one step of a recipe.
type RecipeStep struct {
	ID   string         `json:"id,omitempty" yaml:"id,omitempty"`
	Kind string         `json:"kind" yaml:"kind"`
	With map[string]any `json:"with,omitempty" yaml:"with,omitempty"`
}

var (
	// refRe matches ${ref} and its escape $${…}, which stands for a
	// literal "${…}" (the caller tells them apart by the leading "$$").
	refRe    = regexp.MustCompile(`\$?\$\{([^}]*)\}`)
	refOKRe  = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_-]*)\.([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)$`)
	stepIDRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]{0,63}$`)
)

// maxRecipeSize bounds a recipe file.
const maxRecipeSize = 4 << 20

// ParseRecipe decodes a YAML (or JSON) recipe strictly: unknown fields are
// errors. It does not validate the steps; call Validate.
func ParseRecipe(data []byte) (*Recipe, error) {
	if len(data) > maxRecipeSize {
		return nil, fmt.Errorf("%w: recipe larger than %d bytes", ErrInvalid, maxRecipeSize)
	}
	var r Recipe
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("%w: recipe: %v", ErrInvalid, err)
	}
	var extra any
	if err := dec.Decode(&extra); err == nil {
		return nil, fmt.Errorf("%w: recipe: more than one YAML document", ErrInvalid)
	}
	// normalise YAML maps (map[string]any with nested map[any]any is not
	// produced by yaml.v3, but ints and floats need to survive JSON)
	for i := range r.Steps {
		if r.Steps[i].With == nil {
			r.Steps[i].With = map[string]any{}
		}
	}
	return &r, nil
}

// Validate checks a recipe before anything runs: a name, known kinds,
// unique step IDs, parameters that decode and validate, and references
// that name an earlier step and a field of its result. Steps whose
// parameters hold references are validated again once those resolve.
func (r *Recipe) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if strings.TrimSpace(r.Name) == "" {
		bad("recipe has no name")
	} else if strings.IndexFunc(r.Name, func(c rune) bool { return unicode.IsControl(c) || c == 0x7f }) >= 0 {
		// It is printed by tx list: a control character would reach the
		// operator's terminal raw.
		bad("recipe name %q contains control characters", r.Name)
	}
	if len(r.Steps) == 0 {
		bad("recipe has no steps")
	}
	seen := map[string]kind{}
	for i, s := range r.Steps {
		where := fmt.Sprintf("step %d", i+1)
		if s.ID != "" {
			where = fmt.Sprintf("step %d (%s)", i+1, s.ID)
			if !stepIDRe.MatchString(s.ID) {
				bad("%s: id must be a letter or '_' followed by letters, digits, '_' or '-'", where)
			} else if _, dup := seen[s.ID]; dup {
				bad("%s: id %q used twice", where, s.ID)
			}
		}
		k, err := lookup(s.Kind)
		if err != nil {
			bad("%s: %s", where, stripInvalid(err))
			continue
		}
		hasRef := false
		walkStrings(s.With, func(str string) {
			for _, m := range refRe.FindAllStringSubmatch(str, -1) {
				if strings.HasPrefix(m[0], "$$") {
					continue // an escaped, literal ${…}
				}
				hasRef = true
				ref := refOKRe.FindStringSubmatch(m[1])
				if ref == nil {
					bad("%s: reference ${%s}: want ${step-id.field}", where, m[1])
					continue
				}
				prev, ok := seen[ref[1]]
				if !ok {
					bad("%s: reference ${%s}: no earlier step has id %q", where, m[1], ref[1])
					continue
				}
				field, _, _ := strings.Cut(ref[2], ".")
				if !prev.resultFields()[field] {
					bad("%s: reference ${%s}: the result of %s has no field %q", where, m[1], prev.name(), field)
				} else if err := fieldPath(prev.resultType(), strings.Split(ref[2], ".")); err != nil {
					bad("%s: reference ${%s}: the result of %s %v", where, m[1], prev.name(), err)
				}
			}
		})
		if !hasRef {
			raw, err := json.Marshal(s.With)
			if err != nil {
				bad("%s: parameters: %v", where, err)
			} else if p, err := k.decodeParams(raw); err != nil {
				bad("%s: %s", where, stripInvalid(err))
			} else if err := k.validate(p); err != nil {
				bad("%s: %s", where, stripInvalid(err))
			}
		}
		if s.ID != "" {
			seen[s.ID] = k
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
	}
	return nil
}

func stripInvalid(err error) string {
	return strings.TrimPrefix(err.Error(), ErrInvalid.Error()+": ")
}

func walkStrings(v any, fn func(string)) {
	switch x := v.(type) {
	case string:
		fn(x)
	case map[string]any:
		for _, e := range x {
			walkStrings(e, fn)
		}
	case []any:
		for _, e := range x {
			walkStrings(e, fn)
		}
	}
}

// substitute replaces references with results. A string that is exactly
// one reference takes the result's value and type; a reference inside a
// longer string is formatted into it.
func substitute(v any, results map[string]map[string]any) (any, error) {
	switch x := v.(type) {
	case string:
		if m := refRe.FindStringSubmatchIndex(x); m != nil && m[0] == 0 && m[1] == len(x) && !strings.HasPrefix(x, "$$") {
			return lookupRef(x[m[2]:m[3]], results)
		}
		var err error
		out := refRe.ReplaceAllStringFunc(x, func(s string) string {
			if strings.HasPrefix(s, "$$") {
				return s[1:] // $${x} is a literal ${x}
			}
			val, e := lookupRef(s[2:len(s)-1], results)
			if e != nil {
				err = e
				return s
			}
			if str, ok := val.(string); ok {
				return str
			}
			b, _ := json.Marshal(val)
			return string(b)
		})
		return out, err
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			s, err := substitute(e, results)
			if err != nil {
				return nil, err
			}
			out[k] = s
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			s, err := substitute(e, results)
			if err != nil {
				return nil, err
			}
			out[i] = s
		}
		return out, nil
	}
	return v, nil
}

func lookupRef(ref string, results map[string]map[string]any) (any, error) {
	id, path, _ := strings.Cut(ref, ".")
	var cur any = results[id]
	if results[id] == nil {
		return nil, fmt.Errorf("reference ${%s}: step %q has no result", ref, id)
	}
	for _, f := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("reference ${%s}: %q is not an object", ref, f)
		}
		if cur, ok = m[f]; !ok {
			return nil, fmt.Errorf("reference ${%s}: result has no field %q", ref, f)
		}
	}
	return cur, nil
}

// Apply validates a recipe and runs it as one transaction: committed on
// success, rolled back on failure. It returns the transaction ID (empty
// if validation failed and nothing ran).
func Apply(ctx context.Context, r *Recipe, opts ...Option) (string, error) {
	if err := r.Validate(); err != nil {
		return "", err
	}
	raw, err := json.Marshal(r)
	if err != nil {
		return "", fmt.Errorf("encode recipe: %w", err)
	}
	tx, err := Begin(ctx, r.Name, append(opts, withRecipe(raw))...)
	if err != nil {
		return "", err
	}
	return tx.id, finish(ctx, tx, runRecipe(ctx, tx, r))
}

// ResumeID continues an interrupted recipe transaction from its journal:
// steps done are skipped with their recorded results, the uncertain one
// is checked, the rest run, and the transaction commits (or, on a new
// failure, rolls back).
func ResumeID(ctx context.Context, id string, opts ...Option) error {
	if err := ValidID(id); err != nil {
		return err
	}
	tx, err := Begin(ctx, "", append(opts, WithID(id))...)
	if err != nil {
		return err
	}
	if tx.ended {
		tx.Close()
		return nil // committed already
	}
	if len(tx.recipe) == 0 {
		tx.Close()
		return fmt.Errorf("%w: transaction %s was not started from a recipe; rerun its program with the same ID to resume it", ErrInvalid, id)
	}
	var r Recipe
	if err := json.Unmarshal(tx.recipe, &r); err != nil {
		tx.Close()
		return fmt.Errorf("decode journaled recipe: %w", err)
	}
	return finish(ctx, tx, runRecipe(ctx, tx, &r))
}

func runRecipe(ctx context.Context, tx *Tx, r *Recipe) error {
	results := map[string]map[string]any{}
	for i, s := range r.Steps {
		k, err := lookup(s.Kind)
		if err != nil {
			return err
		}
		with, err := substitute(map[string]any(s.With), results)
		if err != nil {
			return &StepError{Step: i + 1, Kind: s.Kind, ID: s.ID, Err: err}
		}
		raw, err := json.Marshal(with)
		if err != nil {
			return &StepError{Step: i + 1, Kind: s.Kind, ID: s.ID, Err: err}
		}
		p, err := k.decodeParams(raw)
		if err != nil {
			return &StepError{Step: i + 1, Kind: s.Kind, ID: s.ID, Err: err}
		}
		var res json.RawMessage
		if err := tx.do(ctx, s.ID, p, &res); err != nil {
			return err
		}
		if s.ID != "" {
			m := map[string]any{}
			if len(res) > 0 {
				_ = json.Unmarshal(res, &m)
			}
			results[s.ID] = m
		}
	}
	return nil
}
