package raid

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/bofhkit/bofh/run"
)

// WaitOptions tune [Wait].
type WaitOptions struct {
	// Interval between polls of /proc/mdstat (default 1s).
	Interval time.Duration
	// Progress, when set, is called on every poll while an action runs.
	Progress func(Progress)
}

// Wait blocks until dev ("/dev/md0" or "md0") has no resync, recovery,
// reshape or check running or pending, reporting progress to
// opts.Progress. It returns the context's error if ctx ends first, and an
// error if the array disappears.
func Wait(ctx context.Context, r run.Runner, dev string, opts WaitOptions) error {
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	name := dev
	if strings.HasPrefix(dev, "/dev/md/") {
		if real, err := filepath.EvalSymlinks(dev); err == nil {
			name = real
		}
	}
	t := time.NewTicker(opts.Interval)
	defer t.Stop()
	for {
		st, err := ReadMDStat(ctx, r)
		if err != nil {
			return fmt.Errorf("wait for %s: %w", dev, err)
		}
		a, ok := st.Get(name)
		if !ok {
			return fmt.Errorf("wait for %s: %w", dev, ErrNotActive)
		}
		if a.Sync == nil {
			return nil
		}
		if opts.Progress != nil {
			p := *a.Sync
			p.Device = dev
			opts.Progress(p)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w", dev, ctx.Err())
		case <-t.C:
		}
	}
}

// Bar returns a progress callback drawing a one-line bar on w (meant for
// a terminal's stderr: it rewrites the line with \r). Call the returned
// done function to end the line.
func Bar(w io.Writer) (progress func(Progress), done func()) {
	drawn := false
	progress = func(p Progress) {
		const width = 30
		n := int(p.Percent / 100 * width)
		n = max(0, min(width, n))
		line := fmt.Sprintf("\r%s %-8s [%s%s] %5.1f%%", p.Device, p.Action,
			strings.Repeat("=", n), strings.Repeat(" ", width-n), p.Percent)
		if p.Pending {
			line = fmt.Sprintf("\r%s %-8s pending", p.Device, p.Action)
		} else if p.Speed > 0 {
			line += fmt.Sprintf(" %d KiB/s, %s left", p.Speed, p.Finish)
		}
		fmt.Fprint(w, line+"\033[K")
		drawn = true
	}
	done = func() {
		if drawn {
			fmt.Fprintln(w)
		}
	}
	return progress, done
}

// IsTerminal reports whether f is a terminal (for deciding to draw a Bar).
func IsTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
