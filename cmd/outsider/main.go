// Command outsider is Outsider on the operator's machine: replay CloudTrail files through
// the detector (no AWS account needed), drill a deployment, suppress what is the team's
// own, print its version.
//
//	go install github.com/outsider-sec/outsider/cmd/outsider@latest
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/securityhub"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/outsider-sec/outsider/pkg/drill"
	"github.com/outsider-sec/outsider/pkg/replay"
	"github.com/outsider-sec/outsider/pkg/suppress"
)

func main() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }

const usage = `Usage: outsider COMMAND [flags]

Were the temporary credentials of one of your Lambda functions used from outside AWS?

Commands:
  replay    run the detection over CloudTrail files (events, log files, trail folders)
  drill     use the deployed canary's Lambda token from this machine and wait for its finding
  suppress  make Security Hub automation rules that suppress future findings (function, role,
            principal, cidr)
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
	case "drill":
		return drillMain(args[1:], stdout, stderr)
	case "suppress":
		return suppressMain(args[1:], stdout, stderr)
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

// parseFlags parses a command's flags: -h prints usage and the flags on stdout; an error
// is said once, prefixed with the command's name. done tells the caller to return code.
func parseFlags(fs *flag.FlagSet, args []string, usage string, stdout, stderr io.Writer) (code int, done bool) {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	switch {
	case err == nil:
		return 0, false
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, usage+"\nFlags:\n")
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return replay.ExitOK, true
	}
	replay.PrintError(stderr, "outsider "+fs.Name(), err)
	return replay.ExitUsage, true
}

// drillMain runs `outsider drill`, with the operator's AWS credentials and region.
func drillMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("drill", flag.ContinueOnError)
	fn := fs.String("function", "outsider-canary", "the canary function (the detector stack's CanaryFunction output; deployed with -c drillPrincipal=YOUR_ARN)")
	timeout := fs.Duration("timeout", 20*time.Minute, "how long to wait for the finding")
	every := fs.Duration("every", 15*time.Second, "how often to ask Security Hub")
	if code, done := parseFlags(fs, args, "Usage: outsider drill [flags]\n\n"+
		"Invokes the stack's canary function, calls sts:GetCallerIdentity from this machine with the\n"+
		"Lambda token it hands back (its role may do nothing else), and waits for the drill's finding\n"+
		"in Security Hub: the whole path, CloudTrail to finding, the day the stack is deployed.\n"+
		"AWS credentials and region from the environment (the principal named in drillPrincipal).\n", stdout, stderr); done {
		return code
	}
	ctx := context.Background()
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		replay.PrintError(stderr, "outsider drill", err)
		return replay.ExitUsage
	}
	d := &drill.Drill{
		Lambda: lambda.NewFromConfig(cfg), Hub: securityhub.NewFromConfig(cfg), Function: *fn, Timeout: *timeout, Every: *every, Out: stdout,
		STS: func(c aws.Credentials) drill.Caller {
			cc := cfg.Copy()
			cc.Credentials = credentials.StaticCredentialsProvider{Value: c}
			return sts.NewFromConfig(cc)
		},
	}
	if _, err := d.Run(ctx); err != nil {
		replay.PrintError(stderr, "outsider drill", err)
		return replay.ExitError
	}
	return replay.ExitOK
}

// suppressMain runs `outsider suppress ENTRY...`, with the operator's AWS credentials.
func suppressMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("suppress", flag.ContinueOnError)
	order := fs.Int("order", 100, "the first rule's order among the account's automation rules (1 to 1000; lower runs first)")
	if code, done := parseFlags(fs, args, "Usage: outsider suppress [flags] KIND=VALUE...\n\n"+
		"Makes a Security Hub automation rule per entry that sets Outsider's future matching findings\n"+
		"SUPPRESSED (Workflow only). Entries: function=<function ARN>, role=<role ARN>,\n"+
		"principal=<ARN that assumed the role>, cidr=<IPv4 network of /8, /16, /24 or /32>.\n"+
		"Run it in the Security Hub administrator account to cover member accounts' findings.\n"+
		"The stack's -c suppress=... makes the same rules.\n", stdout, stderr); done {
		return code
	}
	entries, err := suppress.Parse(strings.Join(fs.Args(), ","))
	if err == nil && len(entries) == 0 {
		err = errors.New("no KIND=VALUE entry given")
	}
	if err == nil && (*order < 1 || *order+len(entries)-1 > 1000) {
		err = fmt.Errorf("--order: %d is not between 1 and 1000 for %d rules", *order, len(entries))
	}
	if err != nil {
		replay.PrintError(stderr, "outsider suppress", err)
		return replay.ExitUsage
	}
	ctx := context.Background()
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		replay.PrintError(stderr, "outsider suppress", err)
		return replay.ExitUsage
	}
	arns, err := suppress.Create(ctx, securityhub.NewFromConfig(cfg), entries, int32(*order))
	for i, arn := range arns {
		fmt.Fprintf(stdout, "outsider suppress: %s: %s\n", entries[i].Name(), arn)
	}
	if err != nil {
		replay.PrintError(stderr, "outsider suppress", err)
		return replay.ExitError
	}
	return replay.ExitOK
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
