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
// token is a chained token: still the function's until it expires (the expiration instant
// excluded), along a chain of any length; its use from outside is reported on the function,
// naming both roles, and the role title never applies to it. The chained role does not
// become a Lambda execution role. A cross-account AssumeRole is logged in both accounts: the
// role owner's copy (the caller shown as AWSAccount) is kept apart and counts only where the
// caller's own copy is missing, whichever arrives first. The function's code using a chained
// key from inside (its SDK's exec-env user agent) makes that key seen inside.
//
// People never pass through a Lambda execution role: what a session of a Lambda role
// obtains is no person's, whoever assumed the role.
//
// # Outside
//
// sourceIPAddress is outside when it parses as an address (IPv4-mapped IPv6 unmapped
// first; service names and "AWS Internal" are inside, and "AWS Internal" is AWS acting: it
// never makes a key seen inside), the call did not come through a VPC endpoint of the
// organisation, the address is globally reachable by IANA's special-purpose registries
// (private, loopback, link-local, CGNAT, documentation, multicast are inside; AMT, Teredo,
// 6to4 and the other reachable or N/A ranges are public), it is in none of AWS's published
// prefixes (every service, IPv4 and IPv6), and it is not in the operator's trusted networks
// — which only ever move a public address out of "outside".
//
// A VPC endpoint is the organisation's when its account (vpcEndpointAccountId) is a
// configured member, or an account whose own trail was read at or before the call; a
// record naming no endpoint account is inside. Through any other account's endpoint the
// call is outside whatever its address (the thief's network inside AWS), with the signal
// foreign-vpc-endpoint.
//
// Calls AWS makes with the role on its behalf (invokedBy set, or an AWS service identity,
// with a service name, "AWS Internal" or an address inside AWS as the source) are never
// usage from outside. invokedBy with a public address outside AWS silences nothing.
//
// A presigned-URL use — an S3 object operation (GetObject, HeadObject, PutObject and the
// multipart ones) authenticated by query string — was signed by the function but made by
// whoever holds the URL: it never opens a finding and is not one of a finding's calls; it
// is listed (with its API) on every finding of the same subject whose period holds it,
// whatever the title, before or after the finding opened (a per-period ledger keeps them).
// Any other call signed by query string is usage like any other. Config.PresignedFindings
// makes the object uses findings.
//
// # Titles
//
// A call from outside with a Lambda's token gets the first title whose condition holds;
// every signal that holds is listed. The titles are a table (TitleSpecs: code, default
// severity, the signal that selects each); the decision is TitleOf(signals):
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
// Deduplication: one finding per (account, subject, title, period), the subject being the
// function (the role, for the role title). Periods are fixed: consecutive intervals of the
// dedup length from Monday 1970-01-05T00:00:00Z (for 7 days, the ISO weeks of UTC). A
// call's period is a function of its time alone, so no order of delivery, race, restart or
// backfill can split, merge or move findings. A call — (recipientAccountId, eventID) — is
// counted once, in one finding, however often it arrives. A finding counts its calls
// exactly up to 4,096; past that its count is a lower bound and it still gathers every
// later call's addresses, APIs, user agents, keys and signals. It lives (in the store) as
// long as a call can still join it: its period plus the training period.
//
// # Order and delivery
//
// Records may arrive out of order, twice, and late. Deciding them again changes nothing:
// a call is counted once, facts are merged, periods do not move. Within one second, what
// teaches is applied before what is decided (Rank), whatever the input's order. The residual: a learning
// event that arrives after the call it would explain (beyond one batch) can change that
// call's title or hide it; the replay reorders within an event-time window and the Lambda
// sorts each batch, which keeps it rare.
package detect
