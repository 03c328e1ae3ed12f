package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/securityhub"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/outsider-sec/outsider/pkg/asff"
	"github.com/outsider-sec/outsider/pkg/awsid"
	"github.com/outsider-sec/outsider/pkg/config"
	"github.com/outsider-sec/outsider/pkg/detect"
	"github.com/outsider-sec/outsider/pkg/dynamo"
	"github.com/outsider-sec/outsider/pkg/hub"
	"github.com/outsider-sec/outsider/pkg/ipranges"
	"github.com/outsider-sec/outsider/pkg/notify"
	"github.com/outsider-sec/outsider/pkg/refresh"
	"github.com/outsider-sec/outsider/pkg/silence"
)

// MemberImporters returns the importers that file findings in member accounts: Security
// Hub's BatchImportFindings, with the credentials of the role the member's forwarder stack
// creates for the detector (config.ImporterRolePrefix + region), cached per account.
// BatchImportFindings with the default product takes only findings of the calling account.
// https://docs.aws.amazon.com/securityhub/1.0/APIReference/API_BatchImportFindings.html
func MemberImporters(awsCfg aws.Config, partition string) func(account string) Importer {
	cache := map[string]Importer{}
	stsc := sts.NewFromConfig(awsCfg)
	return func(account string) Importer {
		if im, ok := cache[account]; ok {
			return im
		}
		c := awsCfg.Copy()
		arn := awsid.RoleARN(partition, account, config.ImporterRolePrefix+awsCfg.Region)
		c.Credentials = aws.NewCredentialsCache(stscreds.NewAssumeRoleProvider(stsc, arn, func(o *stscreds.AssumeRoleOptions) {
			o.RoleSessionName = "outsider-detector"
		}))
		im := hub.New(securityhub.NewFromConfig(c))
		cache[account] = im
		return im
	}
}

// New builds the Lambda's handler from its configuration: the clients, the state table,
// AWS's ranges (the embedded snapshot, or what the refresher stored, checked at most every
// five minutes) and the ASN database when one is configured.
func New(ctx context.Context, cfg config.Config, awsCfg aws.Config, log *slog.Logger) (*Handler, error) {
	ranges := ipranges.NewCurrent(ipranges.Embedded())
	var asns detect.ASNLookup = detect.NoASN{}
	var watcher *refresh.Watcher
	if !cfg.IPRanges.IsZero() || !cfg.ASNDB.IsZero() {
		s3c := s3.NewFromConfig(awsCfg)
		if !cfg.IPRanges.IsZero() {
			watcher = &refresh.Watcher{S3: s3c, Bucket: cfg.IPRanges.Bucket, Key: cfg.IPRanges.Key, Ranges: ranges, Every: 5 * time.Minute}
			if err := watcher.Check(ctx); err != nil {
				log.Warn("could not load AWS's ip ranges from S3: the embedded snapshot stands", "error", err)
			}
		}
		if !cfg.ASNDB.IsZero() {
			db, err := refresh.LoadASN(ctx, s3c, cfg.ASNDB.Bucket, cfg.ASNDB.Key)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", config.EnvASNDB, err)
			}
			asns = db
		}
	}
	st := dynamo.New(dynamodb.NewFromConfig(awsCfg), cfg.Table)
	det, err := detect.New(cfg.Detect, st, ranges, asns)
	if err != nil {
		return nil, err
	}
	var member func(string) Importer
	if cfg.FileInMembers {
		member = MemberImporters(awsCfg, awsid.Partition(cfg.Region))
	}
	h := &Handler{
		Detector:      det,
		Store:         st,
		Hub:           hub.New(securityhub.NewFromConfig(awsCfg)),
		Notify:        notify.New(sns.NewFromConfig(awsCfg), cfg.TopicARN, cfg.Region),
		Product:       asff.Product{Partition: awsid.Partition(cfg.Region), Region: cfg.Region, Account: cfg.SecurityAccount},
		Log:           log,
		Metrics:       os.Stdout,
		Heard:         &silence.Register{Store: st},
		EmailSeverity: cfg.EmailSeverity,
		Member:        member,
	}
	if watcher != nil {
		h.Ranges = watcher
	}
	return h, nil
}
