package gen

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"
)

// DenseConfig shapes a dense history: an organisation of hundreds of accounts whose trails
// are mostly Lambda (Lambda's AssumeRoles and the functions' own calls), with AWS services,
// people from their own networks, functions chaining into a few hub accounts' roles, and
// thefts of function keys (some of them chained keys) used from outside.
type DenseConfig struct {
	Seed      uint64
	Records   int
	Start     time.Time
	Days      int
	Accounts  int
	Functions int // per account
	Hubs      int // accounts whose shared role the others' functions assume (cross-account chains)
}

// Dense is 400 accounts of two busy functions over 47 days, eight of them hubs.
func Dense(records int) DenseConfig {
	return DenseConfig{Seed: 42, Records: records, Start: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), Days: 47, Accounts: 400, Functions: 2, Hubs: 8}
}

// DenseSummary counts what WriteDense wrote.
type DenseSummary struct {
	Records, LambdaIssued, LambdaInside, Internal, People, Chains, Thefts, TheftCalls, ChainedThefts int
}

type denseAccount struct {
	id     string
	fns    []*function
	people []string // a person's current key, per person
	hub    string   // the hub whose shared role this account's first function assumes ("" for a hub)
	chain  string   // that function's current chained key
	chainT time.Time
}

// keyLife is how long the generator's function keys live (Lambda's are valid for up to 12
// hours); a thief uses a key while it is valid.
const keyLife = 12 * time.Hour

// WriteDense writes a dense history in time order, handing each record (a JSON line) to
// emit with the account whose trail logs it (its recipientAccountId): a cross-account
// AssumeRole is logged twice, in the caller's account and the role owner's.
func WriteDense(cfg DenseConfig, emit func(account string, line []byte) error) (DenseSummary, error) {
	g := &writer{rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)), aws: awsPrefixes(), emit: emit}
	accts := make([]*denseAccount, cfg.Accounts)
	for i := range accts {
		a := &denseAccount{id: fmt.Sprintf("%012d", 400000000000+uint64(i)*1009)}
		for j := 0; j < cfg.Functions; j++ {
			name := fmt.Sprintf("fn-%02d-%s", j, []string{"orders", "invoices", "reports", "sync", "ingest", "thumbs", "billing"}[j%7])
			a.fns = append(a.fns, &function{account: a.id, name: name, role: name + "-role", region: regions[(i+j)%len(regions)], ua: lambdaUAs[j%len(lambdaUAs)]})
		}
		a.people = make([]string, 3)
		accts[i] = a
	}
	hubs := min(cfg.Hubs, cfg.Accounts)
	for i, a := range accts {
		if i >= hubs {
			a.hub = accts[i%max(hubs, 1)].id
		}
	}
	var s DenseSummary
	span := time.Duration(cfg.Days) * 24 * time.Hour
	step := span / time.Duration(max(cfg.Records, 1))
	activeFrom := cfg.Start.Add(16 * 24 * time.Hour) // thefts after every account's activation period
	t := cfg.Start
	issue := func(fn *function) {
		fn.key, fn.keyAt = g.key(), t
		g.assumeRole(t, fn)
		s.LambdaIssued++
		s.Records++
	}
	for s.Records < cfg.Records && g.err == nil {
		t = t.Add(step)
		a := accts[g.rng.IntN(len(accts))]
		fn := a.fns[g.rng.IntN(len(a.fns))]
		switch p := g.rng.IntN(1000); {
		case p < 40: // Lambda issues a function a key (a cold start)
			issue(fn)
		case p < 600: // a function calls AWS from inside
			if fn.key == "" || t.Sub(fn.keyAt) >= keyLife {
				issue(fn)
				break
			}
			if fn == a.fns[0] && a.hub != "" && g.rng.IntN(8) == 0 && (a.chain == "" || t.Sub(a.chainT) >= time.Hour) {
				g.chain(t, a, fn)
				s.Chains++
				s.Records += 3
				break
			}
			c := insideCalls[g.rng.IntN(len(insideCalls))]
			g.record(t, fn.account, fn.region, c[0], c[1], g.session(fn.account, fn.role, fn.name, fn.key), g.awsIP(fn.region), fn.ua, c[2], "", "")
			s.LambdaInside++
			s.Records++
		case p < 850: // AWS services, instance roles, CI: inside AWS
			g.internalCall(t, a.id)
			s.Internal++
			s.Records++
		case p < 988: // the company's people, from their own networks
			who := g.rng.IntN(len(a.people))
			if a.people[who] == "" || g.rng.IntN(20) == 0 {
				a.people[who] = g.key()
			}
			ip := peopleNets[g.rng.IntN(len(peopleNets))] + strconv.Itoa(2+g.rng.IntN(250))
			ua := uaConsole
			if g.rng.IntN(4) == 0 {
				ua = uaCLI
			}
			g.record(t, a.id, "eu-west-1", "ec2.amazonaws.com", "DescribeInstances", g.session(a.id, "AWSReservedSSO_PowerUser_0a1b2c3d", "person"+strconv.Itoa(who)+"@example.org", a.people[who]), ip, ua, `{"maxResults":1000}`, "", "")
			s.People++
			s.Records++
		case p < 993 && t.After(activeFrom): // a thief uses a function's key (or its chained key) from outside
			ip := attackerNet[g.rng.IntN(len(attackerNet))] + strconv.Itoa(10+g.rng.IntN(200))
			ua := []string{uaCLI, uaScript}[g.rng.IntN(2)]
			recipient, ident := a.id, ""
			switch {
			case a.hub != "" && a.fns[0].key != "" && t.Sub(a.fns[0].keyAt) < keyLife && g.rng.IntN(6) == 0:
				// the key of a role the function chained into, just obtained
				g.chain(t, a, a.fns[0])
				s.Chains++
				s.Records += 3
				t = t.Add(5 * time.Second)
				recipient, ident = a.hub, g.session(a.hub, "shared-reader", a.fns[0].name, a.chain)
				s.ChainedThefts++
			case fn.key != "" && t.Sub(fn.keyAt) < keyLife:
				ident = g.session(fn.account, fn.role, fn.name, fn.key)
			default:
				continue
			}
			s.Thefts++
			for _, c := range [][2]string{{"sts.amazonaws.com", "GetCallerIdentity"}, {"s3.amazonaws.com", "ListBuckets"}, {"iam.amazonaws.com", "ListRoles"}, {"secretsmanager.amazonaws.com", "ListSecrets"}} {
				g.record(t, recipient, "us-east-1", c[0], c[1], ident, ip, ua, "{}", "", "")
				s.TheftCalls++
				s.Records++
				t = t.Add(time.Second)
			}
		}
	}
	return s, g.err
}

// chain: a's first function assumes the shared role of its hub account, whose trail logs
// the role owner's copy, and uses the chained key there, from inside.
func (g *writer) chain(t time.Time, a *denseAccount, fn *function) {
	key := g.key()
	roleARN := "arn:aws:iam::" + a.hub + ":role/shared-reader"
	resp := `{"credentials":{"accessKeyId":"` + key + `","sessionToken":"IQoJb3JpZ2luX2VjEFAKE` + g.keyBody() + `","expiration":"` + t.Add(time.Hour).Format("Jan 2, 2006, 3:04:05 PM") + `"}}`
	req := `{"roleArn":"` + roleARN + `","roleSessionName":"` + fn.name + `"}`
	ip := g.awsIP(fn.region)
	g.record(t, a.id, fn.region, "sts.amazonaws.com", "AssumeRole", g.session(a.id, fn.role, fn.name, fn.key), ip, fn.ua, req, resp, "")
	owner := `{"type":"AWSAccount","principalId":"AROA` + a.id + `X:` + fn.name + `","accountId":"` + a.id + `"}`
	g.record(t, a.hub, fn.region, "sts.amazonaws.com", "AssumeRole", owner, ip, fn.ua, req, resp, "")
	c := insideCalls[g.rng.IntN(len(insideCalls))]
	g.record(t.Add(2*time.Second), a.hub, fn.region, c[0], c[1], g.session(a.hub, "shared-reader", fn.name, key), g.awsIP(fn.region), fn.ua, c[2], "", "")
	a.chain, a.chainT = key, t
}
