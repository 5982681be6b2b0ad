package lvm

import (
	"sort"

	"github.com/bofhkit/bofh/atomic"
)

// Orphan is a VG or LV carrying a bofh_tx_ tag of a transaction that did
// not commit and is not running: left behind by a crash, a rollback that
// did not finish, or a journal that was deleted.
type Orphan struct {
	// Kind is "vg" or "lv".
	Kind string `json:"kind"`
	// Name is the VG name or "vg/lv".
	Name string `json:"name"`
	// TxID is the transaction in the tag.
	TxID string `json:"tx_id"`
	// TxState is the transaction's state, or "unknown" when its journal
	// is not in the state directory.
	TxState string `json:"tx_state"`
}

// StateUnknown is the TxState of an orphan whose journal is missing.
const StateUnknown = "unknown"

// Orphans lists the tagged VGs and LVs of rep whose transaction is neither
// committed nor running, given the transactions known (atomic.List of the
// state directory). Objects of committed transactions keep their tag and
// are not orphans.
func Orphans(rep *Report, txs []atomic.Summary) []Orphan {
	state := map[string]atomic.State{}
	for _, s := range txs {
		state[s.ID] = s.State
	}
	var out []Orphan
	add := func(kind, name string, tags []string) {
		id, ok := TxOfTags(tags)
		if !ok {
			return
		}
		st, known := state[id]
		switch {
		case !known:
			out = append(out, Orphan{Kind: kind, Name: name, TxID: id, TxState: StateUnknown})
		case st != atomic.StateCommitted && st != atomic.StateRunning:
			out = append(out, Orphan{Kind: kind, Name: name, TxID: id, TxState: string(st)})
		}
	}
	for _, vg := range rep.VGs {
		add("vg", vg.Name, vg.Tags)
	}
	for _, lv := range rep.LVs {
		add("lv", lv.FullName(), lv.Tags)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// RemoveSteps returns the steps that remove vg/name. With keepUntilCommit
// the LV is first set aside (renamed, deactivated, data kept) so its name
// is free at once and a rollback restores it; the removal of the aside LV
// runs at commit. Without, the single lvm.lv.remove runs at commit.
func RemoveSteps(txID, vg, name string, keepUntilCommit bool) []atomic.Params {
	if !keepUntilCommit {
		return []atomic.Params{RemoveLV{VG: vg, Name: name}}
	}
	return []atomic.Params{SetAsideLV{VG: vg, Name: name}, RemoveLV{VG: vg, Name: AsideName(txID, name)}}
}
