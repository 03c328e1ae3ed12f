package detect

import (
	"net/netip"

	"github.com/gaissmai/bart"

	"github.com/outsider-sec/outsider/pkg/cloudtrail"
)

// Special-purpose ranges whose addresses are not globally reachable: a call from one of them
// came from inside a network (a VPC, through an endpoint or a NAT), not from the internet.
// IANA IPv4 and IPv6 Special-Purpose Address Registries ("Globally Reachable: False"):
// https://www.iana.org/assignments/iana-ipv4-special-registry/
// https://www.iana.org/assignments/iana-ipv6-special-registry/
var specialPrefixes = []string{
	"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
	"172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
	"198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
	"::/128", "::1/128", "64:ff9b:1::/48", "100::/64", "2001::/23", "2001:db8::/32",
	"3fff::/20", "5f00::/16", "fc00::/7", "fe80::/10", "ff00::/8",
}

var special = func() *bart.Lite {
	t := new(bart.Lite)
	for _, s := range specialPrefixes {
		t.Insert(netip.MustParsePrefix(s))
	}
	return t
}()

// Public reports whether a is a globally reachable unicast address.
func Public(a netip.Addr) bool {
	return a.IsValid() && !special.Lookup(a.Unmap())
}

// Where says where a call came from.
type Where int

const (
	// NotAnAddress: a service name ("lambda.amazonaws.com"), "AWS Internal", or anything
	// that does not parse as an address. Inside.
	NotAnAddress Where = iota
	// Private: not globally reachable (a VPC address, through an endpoint or not). Inside.
	Private
	// AWS: a public address in AWS's published ranges. Inside.
	AWS
	// Trusted: public, outside AWS, in the operator's trusted networks. Not outside.
	Trusted
	// Outside: public, outside AWS, not trusted.
	Outside
)

func (w Where) String() string {
	return [...]string{"not-an-address", "private", "aws", "trusted", "outside"}[w]
}

// RangeLookup answers whether an address is in AWS's published ranges.
type RangeLookup interface {
	Contains(netip.Addr) bool
}

// RegionLookup tells the region of the AWS prefix holding an address ("GLOBAL" for global
// services, "" when none).
type RegionLookup interface {
	Region(netip.Addr) string
}

// classify places a call's source. A call through a VPC endpoint is inside whatever its
// address: the internet cannot reach an endpoint. Trusted networks only ever move a public
// address out of "outside".
// https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-record-contents.html (vpcEndpointId)
func (d *Detector) classify(r *cloudtrail.Record) Where {
	a := r.Addr
	switch {
	case !a.IsValid():
		return NotAnAddress
	case r.VPCEndpointID != "" || !Public(a):
		return Private
	case d.ranges.Contains(a):
		return AWS
	case d.trusted.Lookup(a):
		return Trusted
	}
	return Outside
}
