package mototest

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes moto die with the test binary, even when a test panics and TestMain
// never reaches its cleanup.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
