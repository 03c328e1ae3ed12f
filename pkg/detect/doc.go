// Package detect decides whether a CloudTrail record is a Lambda function's temporary
// credentials (its token) used from outside AWS, and keeps what that decision needs to
// know. It never imports the AWS SDK: state goes through the Store interface declared
// here, and address and ASN lookups through small interfaces. This comment is the
// detection's specification, as the code implements it.
//
// # A Lambda's token
//
// A record is made with a Lambda's token when userIdentity.type is AssumedRole, the key is
// temporary (ASIA…), the role (sessionContext.sessionIssuer) is a Lambda execution role,
// and the session belongs to a function. A function is its ARN: account, region and name.
// The same name in two regions is two functions; a function whose role changes is the same
// function. Its region comes from the AssumeRole that issued its key, else its management
// records or the inventory, else the AWS address of its own calls — never from a call's
// awsRegion (functions call IAM and STS in us-east-1 from anywhere).
//
// What is learned, and from where (only successful calls teach: no errorCode, and not a
// ConsoleLogin whose responseElements say Failure; a failed call from inside does not make
// a key seen inside either):
//
//  1. sts:AssumeRole invoked by lambda.amazonaws.com or edgelambda.amazonaws.com: the role
//     is a Lambda execution role, and the key it issued is a function's, whatever is known
//     of its name (the session name of its calls is the function's).
//  2. Lambda CreateFunction/UpdateFunctionConfiguration with a role (functionName a name
//     or an ARN), and IAM CreateRole/UpdateAssumeRolePolicy trusting Lambda.
//  3. A function's own call from inside AWS: its user agent carries exec-env/AWS_Lambda_
//     and its session name is the function's. A laptop running the function's code sends
//     the same user agent from outside: that teaches nothing. Nor does a session whose key
//     another identity obtained (a chained token).
//  4. An inventory: Lambda ListFunctions per account and region (or `aws lambda
//     list-functions` output given to the replay).
//
// A Lambda@Edge replica's session is named "<region>.<function>": it is that function.
//
// Who issued a key: every AssumeRole is remembered (who, when, from where, the key, and
// whether a person or a function obtained it) from the key's issue until its expiration
// (responseElements.credentials.expiration; 12 hours when the record does not say),
// whether or not the role is known as a Lambda role then. A key obtained with a function's
// token is a chained token: still the function's until it expires; its use from outside is
// reported on the function, naming both roles, and the role title never applies to it. The
// chained role does not become a Lambda execution role.
//
// # Outside
//
// sourceIPAddress is outside when it parses as an address (IPv4-mapped IPv6 unmapped
// first; service names and "AWS Internal" are inside), the call did not come through a VPC
// endpoint (vpcEndpointId set is inside, whatever the address), the address is public
// (private, loopback, link-local, CGNAT, documentation and other special ranges are
// inside), it is in none of AWS's published prefixes (every service, IPv4 and IPv6), and it
// is not in the operator's trusted networks — which only ever move a public address out of
// "outside". Calls AWS makes with the role on its behalf (invokedBy set, an AWS service
// identity, a service name as the source) are never usage from outside.
//
// A presigned-URL request (additionalEventData.AuthenticationMethod "QueryString") was
// signed by the function but made by whoever holds the URL: it never opens a finding and is
// not one of a finding's calls; it is listed as a signal of the finding whose window holds
// it for the same subject and title. Config.PresignedFindings makes such calls findings.
//
// # Titles
//
// A call from outside with a Lambda's token gets the first title whose condition holds;
// every signal that holds is listed:
//
//  1. Suspicious usage of AWS Lambda's role: a session of a Lambda execution role that
//     Lambda did not issue (another identity obtained the key, or the session name is
//     neither a function of the role, nor a replica's, nor awslambda_*). About the role.
//  2. Remote command line usage of AWS Lambda's token: an interactive command-line or
//     attack tool's user agent (CommandLine).
//  3. Usage of AWS Lambda's token from known ASN: the source's ASN was used by the same
//     account's people from public addresses outside AWS (trusted networks included) within
//     the training period. People: IAM users, the root user, Identity Center
//     (AWSReservedSSO_*) and SAML sessions, and role sessions a person obtained. Not people:
//     Lambda sessions, EC2 instance sessions (i-…), web-identity sessions, AWS services, and
//     sessions of unknown origin. Only successful calls by people count.
//  4. Suspicious usage of AWS Lambda's token: the same key was used by the function's own
//     code from inside AWS (an AWS or private address, or a VPC endpoint): a live
//     credential in two places.
//  5. Remote usage of AWS Lambda's token: none of the above.
//
// Failed calls count as usage. Beyond the five, off by default: TitleCrossRegion, a
// function's token used from an AWS address of another region than the function's.
//
// # Time
//
// Event time only (eventTime), never the wall clock, so that replays and backfills are
// deterministic. A call at t is decided on what was seen in [t − training, t] (the same
// second included) and nothing else: a fact learned from a later event never changes the
// decision on an earlier one. Facts are kept as their first and last sighting of each UTC
// day, which answers that question exactly for any training period of a day or more, and
// are merged, never overwritten, whatever order they arrive in.
//
// Activation: no finding for an account (the one owning the function or role) until its own
// trail — records whose recipientAccountId is the account — was first observed at least the
// activation period before the call. Appearing as a caller in another account's trail does
// not start it. Records during activation still train.
//
// Deduplication: one finding per window per (account, subject, title), the subject being
// the function (the role, for the role title). A finding's window is [first call, first
// call + dedup) and never moves: a call joins the first-opened window of its key holding
// its time, or opens its own at its own time, even before existing ones (a backfill, a late
// delivery). A call (by eventID) is counted once, in one finding, however often it arrives.
//
// # Order and delivery
//
// Records may arrive out of order, twice, and late. Deciding them again changes nothing:
// a call is counted once, facts are merged, windows do not move. The residual: a learning
// event that arrives after the call it would explain (beyond one batch) can change that
// call's title or hide it; the replay reorders within an event-time window and the Lambda
// sorts each batch, which keeps it rare.
package detect
