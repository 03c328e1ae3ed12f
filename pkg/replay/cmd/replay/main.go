// Command replay runs Outsider's detection over CloudTrail files, with its state in an
// embedded store (or the deployed DynamoDB table): the first thing to try, and how a
// deployment's history is replayed. Run it with -h for its flags.
package main

import (
	"os"

	"github.com/outsider-sec/outsider/pkg/replay"
)

func main() { os.Exit(replay.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }
