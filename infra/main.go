// Command infra is Outsider's CDK app: the detector stack for the security account and the
// forwarder stack for member accounts. `cdk synth` runs it (see cdk.json).
package main

import (
	"fmt"
	"os"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdklabs/cdk-nag-go/cdknag/v2"
)

func main() {
	defer jsii.Close()
	app := awscdk.NewApp(nil)
	if err := build(app); err != nil {
		fmt.Fprintln(os.Stderr, "outsider infra:", err)
		os.Exit(1)
	}
	app.Synth(nil)
}

// build adds both stacks to app, with cdk-nag's AwsSolutions checks.
func build(app awscdk.App) error {
	s, err := readSettings(func(k string) string {
		if v, ok := app.Node().TryGetContext(jsii.String(k)).(string); ok {
			return v
		}
		return ""
	})
	if err != nil {
		return err
	}
	env := &awscdk.Environment{Account: jsii.String(os.Getenv("CDK_DEFAULT_ACCOUNT")), Region: jsii.String(os.Getenv("CDK_DEFAULT_REGION"))}
	if *env.Account == "" {
		env = nil // environment-agnostic: synth needs no credentials
	}
	NewDetectorStack(app, "OutsiderDetector", s, &awscdk.StackProps{Env: env, Description: jsii.String("Outsider: detects Lambda credentials used from outside AWS")})
	NewForwarderStack(app, "OutsiderForwarder", &awscdk.StackProps{Description: jsii.String("Outsider: forwards this account's CloudTrail API calls to the security account")})
	awscdk.Aspects_Of(app).Add(cdknag.NewAwsSolutionsChecks(&cdknag.NagPackProps{Verbose: jsii.Bool(true)}), nil)
	return nil
}
