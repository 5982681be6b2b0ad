// Package site loads the site configuration (/etc/bofh/site.yaml, or
// $BOFH_SITE): binary paths, the mount pool, and one section per tool
// package (crypt defaults, BMC inventory, libvirt URI, tree store, …),
// which each package decodes itself with Section.
//
// Package site registers no step kinds.
package site

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"gopkg.in/yaml.v3"
)

// DefaultPath is where the site file lives unless --site or BOFH_SITE says.
const DefaultPath = "/etc/bofh/site.yaml"

// Config is a parsed site file.
type Config struct {
	// Path is the file it came from ("" for the built-in defaults).
	Path string
	// Paths maps program names to absolute paths ("lvm": "/sbin/lvm").
	Paths map[string]string
	// MountPool lists mountpoints blockdev.MountPool hands out.
	MountPool []string

	sections map[string]yaml.Node
}

type file struct {
	Paths     map[string]string    `yaml:"paths"`
	MountPool []string             `yaml:"mount_pool"`
	Rest      map[string]yaml.Node `yaml:",inline"`
}

// PathFromEnv returns $BOFH_SITE or DefaultPath.
func PathFromEnv() string {
	if p := os.Getenv("BOFH_SITE"); p != "" {
		return p
	}
	return DefaultPath
}

// Load reads the site file at path. A missing file at the default path is
// not an error (built-in defaults apply); a missing file the operator named
// explicitly is.
func Load(path string, explicit bool) (*Config, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && !explicit {
		return &Config{sections: map[string]yaml.Node{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read site file: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("site file %s: %w", path, err)
	}
	c.Path = path
	return c, nil
}

// Parse decodes a site file's content.
func Parse(data []byte) (*Config, error) {
	var f file
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if f.Rest == nil {
		f.Rest = map[string]yaml.Node{}
	}
	return &Config{Paths: f.Paths, MountPool: f.MountPool, sections: f.Rest}, nil
}

// Section decodes the named top-level section into v (a pointer to the
// package's own config struct), strictly: unknown keys are errors. A
// missing section leaves v as it is (its defaults).
func (c *Config) Section(name string, v any) error {
	if c == nil {
		return nil
	}
	n, ok := c.sections[name]
	if !ok {
		return nil
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	if err := enc.Encode(&n); err != nil {
		return fmt.Errorf("site section %s: %w", name, err)
	}
	dec := yaml.NewDecoder(&buf)
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("site section %s: %w", name, err)
	}
	return nil
}
