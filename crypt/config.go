package crypt

// Config is the `crypt:` section of the site file: defaults for
// crypt.format and crypt.open that a step's own parameters override.
//
//	crypt:
//	  type: luks2
//	  cipher: aes-xts-plain64
//	  key_size: 512
//	  hash: sha256
//	  pbkdf: argon2id
//	  pbkdf_memory: 1048576   # KiB
//	  pbkdf_parallel: 4
//	  iter_time: 2000         # ms of unlock time to aim for
//	  open_backend: luksgo    # or cryptsetup
//	  fast: false             # tests: cheap pbkdf (never for real data)
type Config struct {
	Type            string `yaml:"type" json:"type,omitempty"`
	Cipher          string `yaml:"cipher" json:"cipher,omitempty"`
	KeySize         int    `yaml:"key_size" json:"key_size,omitempty"`
	Hash            string `yaml:"hash" json:"hash,omitempty"`
	PBKDF           string `yaml:"pbkdf" json:"pbkdf,omitempty"`
	PBKDFMemory     int    `yaml:"pbkdf_memory" json:"pbkdf_memory,omitempty"`
	PBKDFParallel   int    `yaml:"pbkdf_parallel" json:"pbkdf_parallel,omitempty"`
	PBKDFIterations int    `yaml:"pbkdf_iterations" json:"pbkdf_iterations,omitempty"`
	IterTime        int    `yaml:"iter_time" json:"iter_time,omitempty"`
	OpenBackend     string `yaml:"open_backend" json:"open_backend,omitempty"`
	Fast            bool   `yaml:"fast" json:"fast,omitempty"`
}

// Fast is the cheap key derivation used by tests: pbkdf2 with 1000
// iterations. It makes brute force trivial: never use it for real data.
var Fast = Config{PBKDF: "pbkdf2", PBKDFIterations: 1000, Hash: "sha256"}

// ApplyFormat fills the parameters f leaves empty from c.
func (c Config) ApplyFormat(f *Format) {
	if c.Fast {
		fc := Fast
		fc.Fast = false
		fc.ApplyFormat(f)
	}
	if f.Type == "" {
		f.Type = c.Type
	}
	if f.Cipher == "" {
		f.Cipher = c.Cipher
	}
	if f.KeySize == 0 {
		f.KeySize = c.KeySize
	}
	if f.Hash == "" {
		f.Hash = c.Hash
	}
	if f.PBKDF == "" {
		f.PBKDF = c.PBKDF
	}
	if f.PBKDFMemory == 0 {
		f.PBKDFMemory = c.PBKDFMemory
	}
	if f.PBKDFParallel == 0 {
		f.PBKDFParallel = c.PBKDFParallel
	}
	if f.PBKDFIterations == 0 && f.IterTime == 0 {
		f.PBKDFIterations = c.PBKDFIterations
		if f.PBKDFIterations == 0 {
			f.IterTime = c.IterTime
		}
	}
}

// ApplyOpen fills the backend of o from c.
func (c Config) ApplyOpen(o *Open) {
	if o.Backend == "" {
		o.Backend = c.OpenBackend
	}
}

// Validate checks the section's values.
func (c Config) Validate() error {
	f := Format{Device: "/dev/null", Passphrase: "x"}
	c.ApplyFormat(&f)
	if err := f.Validate(); err != nil {
		return err
	}
	o := Open{Device: "/dev/null", Name: "x", Passphrase: "x"}
	c.ApplyOpen(&o)
	return o.Validate()
}
