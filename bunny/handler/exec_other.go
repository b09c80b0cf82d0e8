//go:build !unix

package handler

import "os/exec"

func setProcessGroup(*exec.Cmd) {}

// killGroup kills the command alone: there are no process groups here.
func killGroup(cmd *exec.Cmd) error {
	if cmd.Process == nil {
		return nil
	}
	return cmd.Process.Kill()
}
