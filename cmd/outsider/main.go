// Command outsider is Outsider on the operator's machine: replay CloudTrail files through
// the detector (no AWS account needed), and print its version.
//
//	go install github.com/outsider-sec/outsider/cmd/outsider@latest
package main

import (
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"github.com/outsider-sec/outsider/pkg/replay"
)

func main() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }

const usage = `Usage: outsider COMMAND [flags]

Were the temporary credentials of one of your Lambda functions used from outside AWS?

Commands:
  replay    run the detection over CloudTrail files (events, log files, trail folders)
  version   print the version of this build

Run 'outsider COMMAND -h' for a command's flags.
`

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return replay.ExitUsage
	}
	switch args[0] {
	case "replay":
		return replay.Main(args[1:], stdin, stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, version())
		return replay.ExitOK
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return replay.ExitOK
	}
	fmt.Fprintf(stderr, "outsider: unknown command %q\noutsider: run 'outsider help' for the commands\n", args[0])
	return replay.ExitUsage
}

// version is the module version the binary was built from (go install …@VERSION), else
// the commit of a build from a clone.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "outsider (unknown version)"
	}
	v := bi.Main.Version
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = ", modified"
			}
		}
	}
	if rev != "" {
		v += fmt.Sprintf(" (commit %.12s%s)", rev, modified)
	}
	return fmt.Sprintf("outsider %s %s", v, bi.GoVersion)
}
