// Package lvm wraps LVM2 (the lvm, pvcreate, vgcreate, lvcreate, lvresize,
// lvrename, lvchange, lvconvert, lvremove, vgextend, vgreduce, vgremove and
// pvremove commands) as typed Go values and transactional step kinds.
//
// State is read with one command: `lvm fullreport --reportformat json
// --units b --nosuffix` with fixed field lists ([ReportArgs], [Query],
// [ParseReport]), decoded into [Report] with its [PV], [VG] and [LV] values
// (thin pools, thin LVs, snapshots, tags) — not one vgs/lvs/pvs call per
// object. Names are checked by LVM's own rules ([ValidateVGName],
// [ValidateLVName], [ValidateTag]) and sizes parsed ([ParseSize]: 10G,
// 512MiB, 100 extents, 100%FREE, 50%VG) before any command runs. Failed
// commands are classified ([Classify]: [ErrNotFound], [ErrExists],
// [ErrInUse], [ErrNoSpace]) from LVM's messages.
//
// Every VG and LV a step creates carries the tag bofh_tx_<transaction ID>
// ([TxTag]); [Orphans] finds tagged objects whose transaction did not
// commit. (LVM keeps PV tags in VG metadata, so an orphan PV cannot be
// tagged: PVs are not found this way.)
//
// Step kinds registered (parameters: 'bofh step show KIND'):
//
//	lvm.pv.create      pvcreate; undo pvremove
//	lvm.pv.remove      pvremove of a PV in no VG; undo pvcreate --uuid (same UUID)
//	lvm.vg.create      vgcreate (tagged); undo vgremove + pvremove of the labels it wrote
//	lvm.vg.extend      vgextend; undo vgreduce (+ pvremove of new labels)
//	lvm.vg.reduce      vgreduce of PVs with no allocated extents; undo vgextend
//	lvm.vg.remove      vgremove of an empty VG; undo vgcreate with the same PVs, extent size, tags
//	lvm.lv.create      lvcreate linear | thin-pool | thin | snapshot (tagged); undo lvremove,
//	                   only of an LV carrying this transaction's tag and needed by no other LV
//	lvm.lv.remove      lvremove; irreversible, runs at commit
//	lvm.lv.set-aside   deactivate + rename to AsideName + tag; undo renames back and reactivates
//	lvm.lv.rename      lvrename; undo renames back
//	lvm.lv.resize      lvresize -l to a size worked out in extents up front; undo resizes back
//	lvm.lv.activate    lvchange -ay -K; undo lvchange -an
//	lvm.lv.deactivate  lvchange -an; undo lvchange -ay -K
//	lvm.lv.merge       lvconvert --merge of a snapshot; irreversible, runs at commit
//
// Removing an LV: lvm.lv.remove alone is the point of no return and runs
// at commit, after every reversible step succeeded, so a failed transaction
// leaves the LV untouched. When the name must be free during the
// transaction (remove "web", create a new "web"), use lvm.lv.set-aside
// first and lvm.lv.remove of the aside name: the data stays until commit,
// and a rollback puts the LV back under its name ([RemoveSteps]).
//
// Every Prepare probes with one fullreport (of the step's VG where it has
// one) and follows "only undo what you did": an effect already present with
// the same shape is a no-op, another shape is an error (bad input, exit 2
// when nothing ran). Undo never removes an LV or VG that does not carry
// the transaction's tag.
package lvm
