// Package cloudtrail owns the typed CloudTrail record that Outsider decides on, and its
// parsers: EventBridge "AWS API Call via CloudTrail" envelopes, CloudTrail S3 log files
// ({"Records":[...]}, plain or gzip), JSON arrays and NDJSON of records or envelopes.
//
// The record keeps only the fields the detector uses. Secrets that CloudTrail writes into
// responseElements (the sessionToken and secretAccessKey of AssumeRole) are never copied out
// of the raw bytes: they are redacted at parse time by construction, and a test holds that.
package cloudtrail

import (
	"net/netip"
	"strings"
	"time"

	"github.com/outsider-sec/outsider/pkg/awsid"
)

// Identity types of userIdentity.type that the detector tells apart.
// https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-user-identity.html
const (
	IdentityAssumedRole = "AssumedRole"
	IdentityIAMUser     = "IAMUser"
	IdentityRoot        = "Root"
	IdentityAWSService  = "AWSService"
	IdentityAWSAccount  = "AWSAccount"
	IdentityFederated   = "FederatedUser"
)

// Record is one CloudTrail API call, reduced to what the detector needs.
type Record struct {
	// EventID is CloudTrail's unique id of the record (eventID).
	EventID string
	// Time is eventTime (or @timestamp when a forwarder dropped eventTime), in UTC.
	Time time.Time
	// Source is the service that was called (eventSource), e.g. "s3.amazonaws.com".
	Source string
	// Name is the API action (eventName), e.g. "GetCallerIdentity".
	Name string
	// Region is awsRegion: the region the call was made to.
	Region string
	// SourceIP is sourceIPAddress as written: an address, a service name such as
	// "lambda.amazonaws.com", "AWS Internal", or empty when the record has none.
	SourceIP string
	// Addr is SourceIP parsed as an address, IPv4-mapped IPv6 unmapped; the zero Addr
	// (!Addr.IsValid()) when SourceIP is not an address.
	Addr netip.Addr
	// UserAgent is userAgent as written.
	UserAgent string
	// ErrorCode is errorCode; empty when the call succeeded. A failed call is still usage.
	ErrorCode string
	// VPCEndpointID is vpcEndpointId: set when the call came through a VPC endpoint.
	VPCEndpointID string
	// VPCEndpointAcct is vpcEndpointAccountId: the account that owns the endpoint, where
	// the record says (empty otherwise).
	// https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-record-contents.html
	VPCEndpointAcct string
	// RecipientAccount is recipientAccountId: the account whose API was called.
	RecipientAccount string

	// Identity is userIdentity: who made the call.
	Identity Identity

	// Request holds the few requestParameters that teach the detector about Lambda roles,
	// functions and issued keys. Other parameters are not kept.
	Request Request
	// IssuedKeyID is responseElements.credentials.accessKeyId of an STS call: the key that
	// was handed out. The sessionToken and secret key next to it are never kept.
	IssuedKeyID string
	// IssuedKeyExpires is responseElements.credentials.expiration: when the issued key
	// stops working. Zero when the record does not say.
	IssuedKeyExpires time.Time
	// ResponseRoleARN is responseElements.role.arn of IAM CreateRole.
	ResponseRoleARN string
	// ConsoleFailure: a ConsoleLogin whose responseElements say "Failure".
	ConsoleFailure bool
	// Presigned: an S3 request authenticated by a presigned URL
	// (additionalEventData.AuthenticationMethod "QueryString"): signed by the key's holder,
	// made by whoever holds the URL.
	// https://docs.aws.amazon.com/AmazonS3/latest/userguide/cloudtrail-logging-understanding-s3-entries.html
	Presigned bool
}

// Succeeded reports whether the call succeeded: no errorCode, and not a failed sign-in.
// Only successful calls teach the detector anything.
func (r *Record) Succeeded() bool { return r.ErrorCode == "" && !r.ConsoleFailure }

// Identity is userIdentity.
type Identity struct {
	// Type is userIdentity.type: AssumedRole, IAMUser, Root, AWSService, ...
	Type string
	// PrincipalID is userIdentity.principalId ("AROA…:session" for role sessions).
	PrincipalID string
	// ARN is userIdentity.arn ("arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION").
	ARN string
	// AccountID is userIdentity.accountId: the account the identity belongs to.
	AccountID string
	// AccessKeyID is userIdentity.accessKeyId: "ASIA…" for temporary credentials.
	AccessKeyID string
	// InvokedBy is userIdentity.invokedBy: the AWS service that made the call on the
	// identity's behalf (e.g. "lambda.amazonaws.com").
	InvokedBy string
	// IssuerARN is sessionContext.sessionIssuer.arn: the role behind a role session.
	IssuerARN string
	// IssuerAccount is sessionContext.sessionIssuer.accountId.
	IssuerAccount string
	// IssuerName is sessionContext.sessionIssuer.userName: the role's name.
	IssuerName string
}

// Request is the part of requestParameters the detector learns from.
type Request struct {
	// RoleARN is roleArn of sts:AssumeRole.
	RoleARN string
	// RoleSessionName is roleSessionName of sts:AssumeRole.
	RoleSessionName string
	// FunctionName is functionName of Lambda management calls (a name or an ARN).
	FunctionName string
	// Role is role of CreateFunction / UpdateFunctionConfiguration: the execution role ARN.
	Role string
	// RoleName is roleName of IAM role calls.
	RoleName string
	// TrustPolicy is assumeRolePolicyDocument of iam:CreateRole, or policyDocument of
	// iam:UpdateAssumeRolePolicy.
	TrustPolicy string
}

// SessionName is the role session name of an AssumedRole identity: the last part of
// "arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION", or of principalId "AROA…:SESSION".
func (id Identity) SessionName() string {
	if strings.Contains(id.ARN, ":assumed-role/") {
		return id.ARN[strings.LastIndexByte(id.ARN, '/')+1:]
	}
	if _, session, ok := strings.Cut(id.PrincipalID, ":"); ok {
		return session
	}
	return ""
}

// RoleName is the name of the role behind an AssumedRole identity.
func (id Identity) RoleName() string {
	if id.IssuerName != "" {
		return id.IssuerName
	}
	if id.IssuerARN != "" {
		return awsid.RoleName(id.IssuerARN)
	}
	// arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION
	return awsid.AssumedRoleName(id.ARN)
}

// Account is the account the identity belongs to: userIdentity.accountId, else the
// session issuer's, else the account in the ARN.
func (id Identity) Account() string {
	switch {
	case id.AccountID != "":
		return id.AccountID
	case id.IssuerAccount != "":
		return id.IssuerAccount
	}
	return awsid.Account(id.ARN)
}

// Temporary reports whether the access key is a temporary STS key ("ASIA…").
// https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_identifiers.html#identifiers-unique-ids
func (id Identity) Temporary() bool { return strings.HasPrefix(id.AccessKeyID, "ASIA") }

// Account is the account of the record: recipientAccountId, else the identity's.
func (r *Record) Account() string {
	if r.RecipientAccount != "" {
		return r.RecipientAccount
	}
	return r.Identity.Account()
}
