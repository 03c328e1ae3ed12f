package storetest

import (
	"slices"
	"strings"
)

// ListsAsSets sorts the comma-separated lists ("calls=a,b") of findings' one-line summaries,
// by id: a finding's lists keep the order its calls arrived in, which concurrent workers
// and late deliveries change, and tests compare them as sets.
func ListsAsSets(m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		fields := strings.Fields(v)
		for i, f := range fields {
			if name, list, ok := strings.Cut(f, "="); ok && strings.Contains(list, ",") {
				items := strings.Split(list, ",")
				slices.Sort(items)
				fields[i] = name + "=" + strings.Join(items, ",")
			}
		}
		out[k] = strings.Join(fields, " ")
	}
	return out
}
