// Command detector is Outsider's detector. Run with `replay`, it is the local command that
// replays CloudTrail files through the detection and prints findings.
package main

import (
	"fmt"
	"os"

	"github.com/outsider-sec/outsider/pkg/replay"
)

const usage = `Usage: detector replay [flags] PATH...

Run 'detector replay -h' for the flags.
`

func main() {
	if len(os.Args) > 1 && os.Args[1] == "replay" {
		os.Exit(replay.Main(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
	}
	fmt.Fprint(os.Stderr, usage)
	os.Exit(replay.ExitUsage)
}
