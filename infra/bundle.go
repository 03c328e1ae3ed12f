package main

import (
	"os"
	"os/exec"
	"path/filepath"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awss3assets"
	"github.com/aws/jsii-runtime-go"
)

// goBuild builds the function's bootstrap with the Go toolchain: no Docker. It must be a
// pointer: jsii calls TryBundle on the value it was handed.
type goBuild struct {
	pkg string // e.g. ./functions/detector
}

// TryBundle implements awscdk.ILocalBundling.
func (g *goBuild) TryBundle(outputDir *string, _ *awscdk.BundlingOptions) *bool {
	// The same flags as the end-to-end test of the artifact: static, no RPC shim, arm64.
	cmd := exec.Command("go", "build", "-tags", "lambda.norpc", "-trimpath", "-buildvcs=false", "-ldflags=-s -w",
		"-o", filepath.Join(*outputDir, "bootstrap"), g.pkg)
	cmd.Dir = moduleRoot()
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH=arm64", "CGO_ENABLED=0")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return jsii.Bool(cmd.Run() == nil)
}

// goFunctionCode is the Lambda code of a Go command of this module, built at synth time.
// The asset's hash is the binary's, so an unchanged function is not uploaded again.
func goFunctionCode(pkg string) awslambda.Code {
	return awslambda.Code_FromAsset(jsii.String(filepath.Join(moduleRoot(), pkg)), &awss3assets.AssetOptions{
		AssetHashType: awscdk.AssetHashType_OUTPUT,
		Bundling: &awscdk.BundlingOptions{
			Image: awscdk.DockerImage_FromRegistry(jsii.String("scratch")), // never pulled: local bundling succeeds
			Local: &goBuild{pkg: "./" + pkg},
		},
	})
}

// moduleRoot is the directory of go.mod, wherever the app runs from (cdk synth runs it at
// the root; go test in infra/).
func moduleRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return "."
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			return dir
		}
	}
}
