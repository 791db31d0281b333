package server

import (
	"cmp"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Paging of every list (docs/operations.md, "Admin API").
const (
	defaultListLimit = 100
	maxListLimit     = 1000
	maxQueryLen      = 256 // q: longer is a bad parameter
)

// listParams are a list request's paging, sorting and filtering.
type listParams struct {
	offset, limit int
	sort          string
	desc          bool
	q             string // lower-cased
}

// parseListParams reads offset, limit, sort, order and q; sorts are the
// list's sortable fields, def its default sort. A limit past the maximum
// is taken as the maximum.
func parseListParams(v url.Values, sorts []string, def string) (listParams, error) {
	p := listParams{limit: defaultListLimit, sort: def}
	num := func(name string, dst *int, least int) error {
		s := v.Get(name)
		if s == "" {
			return nil
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < least {
			return fmt.Errorf("%s: want an integer ≥ %d, got %q", name, least, truncate(s, 32))
		}
		*dst = n
		return nil
	}
	if err := num("offset", &p.offset, 0); err != nil {
		return p, err
	}
	if err := num("limit", &p.limit, 1); err != nil {
		return p, err
	}
	p.limit = min(p.limit, maxListLimit)
	if s := v.Get("sort"); s != "" {
		if !slices.Contains(sorts, s) {
			return p, fmt.Errorf("sort: %q is not one of %s", truncate(s, 32), strings.Join(sorts, ","))
		}
		p.sort = s
	}
	switch o := v.Get("order"); o {
	case "", "asc":
	case "desc":
		p.desc = true
	default:
		return p, fmt.Errorf("order: want asc or desc, got %q", truncate(o, 32))
	}
	q := v.Get("q")
	if len(q) > maxQueryLen {
		return p, fmt.Errorf("q: longer than %d bytes", maxQueryLen)
	}
	p.q = strings.ToLower(q)
	return p, nil
}

// truncate shortens s for an error message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// listPage is a list's answer.
type listPage[T any] struct {
	Total  int `json:"total"`
	Offset int `json:"offset"`
	Limit  int `json:"limit"`
	Items  []T `json:"items"`
}

// listSpec is how a list filters and sorts its items.
type listSpec[T any] struct {
	// text lists an item's text fields, for q.
	text func(*T) []string
	// by compares two items by a sort field; key is the tie-break (the
	// item's identity), so pages are stable.
	by  map[string]func(a, b *T) int
	key func(a, b *T) int
}

// sortFields are a spec's sort names, sorted.
func (s *listSpec[T]) sortFields() []string {
	names := make([]string, 0, len(s.by))
	for n := range s.by {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// page filters items by p.q and keep, sorts them and cuts the
// page out.
func page[T any](items []T, p listParams, spec *listSpec[T], keep func(*T) bool) listPage[T] {
	// Sorted by pointer: an item is a few hundred bytes, and a sort of
	// 10,000 moves them some 140,000 times (every scrape of a console).
	kept := make([]*T, 0, len(items))
	for i := range items {
		it := &items[i]
		if keep != nil && !keep(it) {
			continue
		}
		if p.q != "" && !slices.ContainsFunc(spec.text(it), func(s string) bool { return containsFold(s, p.q) }) {
			continue
		}
		kept = append(kept, it)
	}
	by := spec.by[p.sort]
	slices.SortFunc(kept, func(a, b *T) int {
		c := by(a, b)
		if c == 0 {
			c = spec.key(a, b)
		}
		if p.desc {
			return -c
		}
		return c
	})
	out := listPage[T]{Total: len(kept), Offset: p.offset, Limit: p.limit, Items: []T{}}
	if p.offset < len(kept) {
		for _, it := range kept[p.offset:min(len(kept), p.offset+p.limit)] {
			out.Items = append(out.Items, *it)
		}
	}
	return out
}

// containsFold says whether s contains lower (already lower-cased),
// ignoring case.
func containsFold(s, lower string) bool {
	return strings.Contains(strings.ToLower(s), lower)
}

// field makes a sort comparison from an accessor.
func field[T any, F cmp.Ordered](get func(*T) F) func(a, b *T) int {
	return func(a, b *T) int { return cmp.Compare(get(a), get(b)) }
}
