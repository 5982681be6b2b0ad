// Package powercut holds the power-cut test of the transaction engine
// (issue 12): a recipe's process is SIGKILLed at every step boundary on a
// file system over a device-mapper device, and then the power is cut
// (dm-flakey drops every write, the file system is unmounted, its page
// cache thrown away, and mounted again from what reached the disk). What
// survived must agree: the journal shows the transaction interrupted, and
// a rollback from it returns the target to its starting state byte for
// byte (a resume, to the end state of a clean run), leaving no backups.
//
// The test is in-guest only (build tag vm, run by `make test-vm`): the
// host's kernel has no device-mapper. The package has no other code.
package powercut
