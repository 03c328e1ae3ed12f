// Package awsid reads and builds AWS identifiers: partitions, account ids and ARNs. It is
// the one place that knows their shapes; it imports the standard library only, so that the
// detection, the stack and the functions can all share it.
package awsid

import "strings"

// Partitions by region prefix, most specific first, as the SDK's partition table gives
// them (aws-sdk-go-v2 internal/endpoints/awsrulesfn/partitions.json, regionRegex).
var partitions = []struct{ prefix, id string }{
	{"us-gov-", "aws-us-gov"},
	{"us-isob-", "aws-iso-b"},
	{"us-isof-", "aws-iso-f"},
	{"us-iso-", "aws-iso"},
	{"eu-isoe-", "aws-iso-e"},
	{"eusc-", "aws-eusc"},
	{"cn-", "aws-cn"},
}

// DefaultPartition is the commercial partition.
const DefaultPartition = "aws"

// Partition is the partition of a region ("cn-north-1": "aws-cn"); "aws" for the
// commercial regions and for an empty or unknown region.
func Partition(region string) string {
	for _, p := range partitions {
		if strings.HasPrefix(region, p.prefix) {
			return p.id
		}
	}
	return DefaultPartition
}

// PartitionOf is the partition field of an ARN, or "aws" when arn is not one.
func PartitionOf(arn string) string {
	rest, ok := strings.CutPrefix(arn, "arn:")
	if p, _, ok2 := strings.Cut(rest, ":"); ok && ok2 && p != "" {
		return p
	}
	return DefaultPartition
}

// Or returns partition, or "aws" when it is empty.
func Or(partition string) string {
	if partition == "" {
		return DefaultPartition
	}
	return partition
}

// Account is the account field of an ARN ("arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE"),
// or "".
func Account(arn string) string {
	rest, ok := strings.CutPrefix(arn, "arn:")
	for i := 0; ok && i < 3; i++ { // partition, service, region
		_, rest, ok = strings.Cut(rest, ":")
	}
	account, _, ok2 := strings.Cut(rest, ":")
	if !ok || !ok2 {
		return ""
	}
	return account
}

// RoleName is the name of "arn:aws:iam::ACCOUNT:role/PATH/NAME" (the path is dropped: a
// role's name is unique in its account whatever its path), or "".
func RoleName(arn string) string {
	if !strings.Contains(arn, ":role/") {
		return ""
	}
	return arn[strings.LastIndexByte(arn, '/')+1:]
}

// AssumedRoleName is the role of "arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION", or "".
func AssumedRoleName(arn string) string {
	_, rest, ok := strings.Cut(arn, ":assumed-role/")
	if !ok {
		return ""
	}
	role, _, _ := strings.Cut(rest, "/")
	return role
}

// IsAccountID reports whether s is a 12-digit account id.
func IsAccountID(s string) bool {
	if len(s) != 12 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// RoleARN is the ARN of an IAM role.
func RoleARN(partition, account, name string) string {
	return "arn:" + Or(partition) + ":iam::" + account + ":role/" + name
}

// FunctionARN is the ARN of a Lambda function.
func FunctionARN(partition, region, account, name string) string {
	return "arn:" + Or(partition) + ":lambda:" + region + ":" + account + ":function:" + name
}

// ProductARN is the ARN of an account's default Security Hub product.
// https://docs.aws.amazon.com/securityhub/latest/userguide/securityhub-custom-providers.html
func ProductARN(partition, region, account string) string {
	return "arn:" + Or(partition) + ":securityhub:" + region + ":" + account + ":product/" + account + "/default"
}
