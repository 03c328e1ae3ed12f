package awsid

import "testing"

func TestPartition(t *testing.T) {
	for region, want := range map[string]string{
		"us-east-1": "aws", "eu-west-3": "aws", "": "aws", "il-central-1": "aws",
		"cn-north-1": "aws-cn", "cn-northwest-1": "aws-cn",
		"us-gov-west-1": "aws-us-gov", "us-iso-east-1": "aws-iso", "us-isob-east-1": "aws-iso-b",
		"us-isof-south-1": "aws-iso-f", "eu-isoe-west-1": "aws-iso-e", "eusc-de-east-1": "aws-eusc",
	} {
		if got := Partition(region); got != want {
			t.Errorf("Partition(%q) = %q, want %q", region, got, want)
		}
	}
}

func TestARNs(t *testing.T) {
	if got := Account("arn:aws-cn:iam::123456789012:role/x"); got != "123456789012" {
		t.Errorf("Account = %q", got)
	}
	for _, bad := range []string{"", "arn:aws:iam", "nope:aws:iam::1:role/x"} {
		if got := Account(bad); got != "" {
			t.Errorf("Account(%q) = %q", bad, got)
		}
	}
	if got := PartitionOf("arn:aws-us-gov:iam::123456789012:role/x"); got != "aws-us-gov" {
		t.Errorf("PartitionOf = %q", got)
	}
	if got := PartitionOf("junk"); got != "aws" {
		t.Errorf("PartitionOf(junk) = %q", got)
	}
	if got := RoleName("arn:aws:iam::123456789012:role/a/b/name"); got != "name" {
		t.Errorf("RoleName = %q", got)
	}
	if got := AssumedRoleName("arn:aws:sts::123456789012:assumed-role/r/s"); got != "r" {
		t.Errorf("AssumedRoleName = %q", got)
	}
	if got := RoleARN("aws-cn", "123456789012", "r"); got != "arn:aws-cn:iam::123456789012:role/r" {
		t.Errorf("RoleARN = %q", got)
	}
	if got := FunctionARN("", "eu-west-1", "123456789012", "f"); got != "arn:aws:lambda:eu-west-1:123456789012:function:f" {
		t.Errorf("FunctionARN = %q", got)
	}
	if !IsAccountID("123456789012") || IsAccountID("12345678901a") || IsAccountID("1234") {
		t.Error("IsAccountID")
	}
}
