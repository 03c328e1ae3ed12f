// Command canary is the drill's canary function (DESIGN §10; opt-in in the stack with
// -c drillPrincipal=ARN): it hands its own temporary credentials to whoever invokes it —
// only that principal may — so that `outsider drill` can use a real Lambda token from
// outside AWS. Its role denies every action explicitly; sts:GetCallerIdentity, which no
// policy can deny, is all the token can do.
// https://docs.aws.amazon.com/STS/latest/APIReference/API_GetCallerIdentity.html
package main

import (
	"context"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
)

// Credentials is the invocation's answer, as `outsider drill` reads it.
type Credentials struct {
	AccessKeyID     string `json:"AccessKeyId"`
	SecretAccessKey string `json:"SecretAccessKey"`
	SessionToken    string `json:"SessionToken"`
}

func main() {
	lambda.Start(func(context.Context) (Credentials, error) {
		return Credentials{os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY"), os.Getenv("AWS_SESSION_TOKEN")}, nil
	})
}
