package inventory

import (
	"net/netip"
	"time"

	"github.com/outsider-sec/outsider/pkg/cloudtrail"
)

type emptyRanges struct{}

func (emptyRanges) Contains(netip.Addr) bool { return false }

func detectRecord(account string) *cloudtrail.Record {
	return &cloudtrail.Record{
		EventID: "e1", Time: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), Source: "s3.amazonaws.com", Name: "ListBuckets",
		SourceIP: "10.0.0.1", Addr: netip.MustParseAddr("10.0.0.1"), RecipientAccount: account,
		Identity: cloudtrail.Identity{Type: "IAMUser", AccountID: account, AccessKeyID: "AKIAX"},
	}
}
