package main

// eventPattern lets through only the CloudTrail API calls the detector can use, for the
// central rule and the member accounts' forwarding rules alike:
//   - calls by role sessions, users and federated identities from an address (not an AWS
//     service name): a Lambda token's use, inside or outside, and the people whose networks
//     make an ASN known. Calls AWS services make (their source is the service's name) are
//     dropped here; "AWS Internal" still passes and the detector drops it in memory, since a
//     field takes only one anything-but.
//   - every sts:AssumeRole: Lambda's own (which says which keys Lambda issued), and other
//     identities assuming a Lambda role (title 1);
//   - Lambda's CreateFunction and UpdateFunctionConfiguration (function -> role);
//   - IAM CreateRole and UpdateAssumeRolePolicy (roles that trust Lambda).
//
// https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-create-pattern-operators.html
func eventPattern() map[string]any {
	return map[string]any{
		// Only AWS's own events: any principal of the organisation may put events on the
		// central bus, but "aws." sources are reserved for AWS services.
		// https://docs.aws.amazon.com/eventbridge/latest/ref/events-structure.html
		"source":      []any{map[string]any{"prefix": "aws."}},
		"detail-type": []any{"AWS API Call via CloudTrail"},
		"detail": map[string]any{
			"$or": []any{
				map[string]any{
					"userIdentity":    map[string]any{"type": []any{"AssumedRole", "IAMUser", "Root", "FederatedUser", "SAMLUser", "WebIdentityUser", "IdentityCenterUser"}},
					"sourceIPAddress": []any{map[string]any{"anything-but": map[string]any{"suffix": ".amazonaws.com"}}},
				},
				map[string]any{"eventSource": []any{"sts.amazonaws.com"}, "eventName": []any{"AssumeRole"}},
				map[string]any{
					"eventSource": []any{"lambda.amazonaws.com"},
					"eventName":   []any{map[string]any{"prefix": "CreateFunction"}, map[string]any{"prefix": "UpdateFunctionConfiguration"}},
				},
				map[string]any{"eventSource": []any{"iam.amazonaws.com"}, "eventName": []any{"CreateRole", "UpdateAssumeRolePolicy"}},
			},
		},
	}
}

// ruleState makes a rule receive read-only management events too (Get*, List*,
// Describe*, sts:GetCallerIdentity): an attacker's first calls.
// https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-service-event-cloudtrail.html
const ruleState = "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS"
