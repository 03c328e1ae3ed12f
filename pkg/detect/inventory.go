package detect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/outsider-sec/outsider/pkg/awsid"
)

// InventoryFunction is one function of the inventory: what `aws lambda list-functions`
// prints for it (the fields the detector uses).
// https://docs.aws.amazon.com/lambda/latest/api/API_FunctionConfiguration.html
type InventoryFunction struct {
	FunctionName string `json:"FunctionName"`
	FunctionArn  string `json:"FunctionArn"`
	Role         string `json:"Role"`
}

// ParseInventory reads the JSON that `aws lambda list-functions` prints ({"Functions":[…]}),
// or a bare array of functions.
func ParseInventory(b []byte) ([]InventoryFunction, error) {
	var page struct {
		Functions *[]InventoryFunction `json:"Functions"`
	}
	if err := json.Unmarshal(b, &page); err != nil {
		var list []InventoryFunction
		if err2 := json.Unmarshal(b, &list); err2 != nil {
			return nil, fmt.Errorf("inventory: not the output of 'aws lambda list-functions': %w", err)
		}
		page.Functions = &list
	}
	if page.Functions == nil {
		// Any other JSON object (cdk.json, say) is not an inventory, even an empty one.
		return nil, errors.New(`inventory: not the output of 'aws lambda list-functions' (no "Functions" list)`)
	}
	for i, f := range *page.Functions {
		if f.FunctionArn == "" || f.Role == "" {
			return nil, fmt.Errorf("inventory: function %d (%q) has no FunctionArn or Role", i, f.FunctionName)
		}
	}
	return *page.Functions, nil
}

type invFunction struct {
	Name, ARN, Region string
}

// inventory is the functions and roles that Lambda itself listed: current truth, not a
// baseline, so it does not age with the training period.
type inventory map[string][]invFunction // ACCOUNT#ROLE -> functions

func (inv inventory) hasRole(account, role string) bool {
	if len(inv) == 0 {
		return false // without an inventory: no key built for every function's call
	}
	_, ok := inv[account+"#"+role]
	return ok
}

func (inv inventory) function(account, role, fn string) (invFunction, bool) {
	for _, f := range inv[account+"#"+role] {
		if f.Name == fn {
			return f, true
		}
	}
	return invFunction{}, false
}

// hasAccount reports whether the inventory covers an account.
func (inv inventory) hasAccount(account string) bool {
	for k := range inv {
		if strings.HasPrefix(k, account+"#") {
			return true
		}
	}
	return false
}

// roleOf returns the role the inventory lists a function with.
func (inv inventory) roleOf(account, fn string) (string, bool) {
	for k, fs := range inv {
		if a, role, _ := strings.Cut(k, "#"); a == account {
			for _, f := range fs {
				if f.Name == fn {
					return role, true
				}
			}
		}
	}
	return "", false
}

// only returns the role's function when it has exactly one.
func (inv inventory) only(account, role string) (invFunction, bool) {
	if fs := inv[account+"#"+role]; len(fs) == 1 {
		return fs[0], true
	}
	return invFunction{}, false
}

// StoredInventory is an account's inventory as the inventory refresher keeps it in the
// store. A large account's list is split (see SplitInventory): the head item holds the
// first functions and the number of parts that follow, written before it under
// InventoryPartKey.
type StoredInventory struct {
	Functions []InventoryFunction `json:"functions"`
	At        time.Time           `json:"at"`
	Parts     int                 `json:"parts,omitempty"`
}

// InventoryKey is the store key of an account's inventory.
func InventoryKey(account string) string { return keyInventory + account }

// InventoryPartKey is the store key of part i (from 1) of an account's inventory listed
// at at: a new listing never mixes with the parts of an older one.
func InventoryPartKey(account string, at time.Time, i int) string {
	return keyInventory + account + "#" + strconv.FormatInt(at.UnixNano(), 10) + "#" + strconv.Itoa(i)
}

// maxInventoryPart bounds an inventory item's functions, in bytes of JSON: far below
// DynamoDB's 400 KB item limit, whatever the account holds.
const maxInventoryPart = 256 << 10

// maxInventoryParts bounds the parts read for one account (about 700 functions a part:
// far more than Lambda's default quotas let an account have).
const maxInventoryParts = 256

// SplitInventory cuts an account's functions into items that each stay below
// maxInventoryPart: the head (which says how many parts follow) and the parts.
func SplitInventory(fns []InventoryFunction, at time.Time) (head StoredInventory, parts []StoredInventory) {
	var cur []InventoryFunction
	size := 0
	var chunks [][]InventoryFunction
	for _, f := range fns {
		n := len(f.FunctionName) + len(f.FunctionArn) + len(f.Role) + 64 // with JSON's quotes and names
		if size+n > maxInventoryPart && len(cur) > 0 {
			chunks, cur, size = append(chunks, cur), nil, 0
		}
		cur, size = append(cur, f), size+n
	}
	chunks = append(chunks, cur)
	head = StoredInventory{Functions: chunks[0], At: at, Parts: len(chunks) - 1}
	for _, c := range chunks[1:] {
		parts = append(parts, StoredInventory{Functions: c, At: at})
	}
	return head, parts
}

// loadInventory reads an account's stored inventory, once per account per worker. An
// inventory with a part missing is not used at all: a partial list would say a role has
// no function it does have.
func (d *Detector) loadInventory(ctx context.Context, account string) error {
	if d.invLoaded[account] {
		return nil
	}
	d.invLoaded[strings.Clone(account)] = true
	var si StoredInventory
	// Stored with a wall-clock expiry by the refresher: read it at wall time.
	found, err := d.getJSON(ctx, InventoryKey(account), d.now(), &si)
	if err != nil || !found || si.Parts < 0 || si.Parts > maxInventoryParts {
		return err
	}
	fns := si.Functions
	for i := 1; i <= si.Parts; i++ {
		var part StoredInventory
		found, err := d.getJSON(ctx, InventoryPartKey(account, si.At, i), d.now(), &part)
		if err != nil || !found {
			return err
		}
		fns = append(fns, part.Functions...)
	}
	d.addInventory(fns)
	return nil
}

// SetInventory replaces the inventory (the fourth source of what a function is).
func (d *Detector) SetInventory(fns []InventoryFunction) {
	d.inv = inventory{}
	d.addInventory(fns)
}

func (d *Detector) addInventory(fns []InventoryFunction) {
	inv := d.inv
	for _, f := range fns {
		name, account, region := functionRef(f.FunctionArn, "", "")
		role := awsid.RoleName(f.Role)
		if roleAcct := awsid.Account(f.Role); roleAcct != "" {
			account = roleAcct
		}
		k := account + "#" + role
		inv[k] = append(inv[k], invFunction{Name: name, ARN: f.FunctionArn, Region: region})
	}
}

// InventoryHas reports whether the inventory lists fn with role in account.
func (d *Detector) InventoryHas(account, role, fn string) bool {
	_, ok := d.inv.function(account, role, fn)
	return ok
}
