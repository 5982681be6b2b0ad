package vmtest

// KVMKnownBroken reports whether the lab has found that KVM does not run
// its guests on this host kernel (the verdict a boot that fell back from
// KVM to TCG remembers in CacheDir()/kvm-broken), so that other tests that
// start qemu, e.g. under libvirt, go straight to TCG. No verdict (the lab
// never fell back here) is false.
func KVMKnownBroken() bool {
	return kvmKnownBroken(&Lab{CacheDir: CacheDir()})
}
