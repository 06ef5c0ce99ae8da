package dashboards

import (
	"context"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"repute/internal/testenv"
	"repute/metrics"
	"repute/metrics/clickhouse"
)

// seeded is what seed stored, for the checks of particular panels.
type seeded struct {
	now                time.Time // the seed's clock: the range ends an hour after it
	sent, sentPrevious int       // sent events in the range and in the 7 days before
	delivered          int
	complaints         int
}

// seed stores, through repute's own ClickHouse store (which applied the
// migrations on Open), events of every kind for two sender domains over
// three providers, each sent event twice (FINAL must count it once), a
// previous period, suppression changes (one unsubscribe handled after 3
// days, one send to a blocklisted address, one to an address lifted
// before the send) and throttle decisions.
func seed(t *testing.T, s *clickhouse.Store) seeded {
	t.Helper()
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	day := now.Add(-24 * time.Hour)
	sd := seeded{now: now}
	var events []metrics.Event
	add := func(e metrics.Event) metrics.Event {
		if e.Account == "" {
			e.Account = "acme"
		}
		if e.SenderDomain == "" {
			e.SenderDomain = "news.acme.test"
		}
		e.Source = "test"
		if err := e.Normalize(metrics.NewISPMap(nil), now.Add(time.Hour)); err != nil {
			t.Fatalf("seed %+v: %v", e, err)
		}
		events = append(events, e)
		return e
	}
	machine := func(b bool) *bool { return &b }
	domains := []string{"gmail.com", "gmail.com", "gmail.com", "yahoo.com", "yahoo.com", "example.org"}
	var complaint metrics.Event
	for i := range 120 {
		rcpt := fmt.Sprintf("r%d@%s", i, domains[i%len(domains)])
		base := metrics.Event{Recipient: rcpt, MessageID: fmt.Sprintf("<m%d@acme.test>", i),
			SendingIP: []string{"192.0.2.1", "192.0.2.2"}[i%2], Campaign: []string{"spring", "summer"}[i%2],
			Category: metrics.CategoryMarketing}
		if i%4 == 3 {
			base.SenderDomain, base.Category = "billing.acme.test", metrics.CategoryTransactional
		}
		at := day.Add(time.Duration(i) * 5 * time.Minute)
		e := base
		e.Time, e.Kind = at, metrics.KindSent
		add(e)
		sd.sent++
		e = base
		switch {
		case i%20 == 4:
			e.Time, e.Kind, e.BounceType, e.Status, e.ReplyCode, e.Reason = at.Add(time.Minute), metrics.KindBounced, metrics.BounceHard, "5.1.1", 550, "unknown_user"
			add(e)
			continue
		case i%20 == 9:
			e.Time, e.Kind, e.BounceType, e.Status, e.ReplyCode, e.Reason = at.Add(time.Minute), metrics.KindBounced, metrics.BounceSoft, "4.2.2", 452, "mailbox_full"
			add(e)
			continue
		case i%10 == 5:
			e.Time, e.Kind, e.Status, e.ReplyCode = at.Add(30*time.Second), metrics.KindDeferred, "4.7.0", 421
			e.Diagnostic = "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume"
			add(e)
		}
		e = base
		e.Time, e.Kind = at.Add(time.Duration(3+i)*time.Second), metrics.KindDelivered
		add(e)
		sd.delivered++
		switch {
		case i%3 == 0:
			e = base
			e.Time, e.Kind, e.Machine = at.Add(time.Hour), metrics.KindOpened, machine(i%2 == 0)
			if i%2 == 0 {
				e.MachineReason = "apple_mpp"
			}
			add(e)
		case i%7 == 1:
			e = base
			e.Time, e.Kind, e.URL = at.Add(2*time.Hour), metrics.KindClicked, "https://acme.test/sale"
			add(e)
		case i%30 == 2:
			e = base
			e.Time, e.Kind, e.FeedbackType, e.FeedbackProvider, e.EvidenceID = at.Add(3*time.Hour), metrics.KindComplained, "abuse", "yahoo", fmt.Sprintf("ev%d", i)
			complaint = add(e)
			sd.complaints++
		case i%40 == 8:
			e = base
			e.Time, e.Kind = at.Add(3*time.Hour), metrics.KindUnsubscribed
			add(e)
		}
	}
	// A delivery 80 hours after its send (over 72 h).
	late := metrics.Event{Recipient: "late@example.org", MessageID: "<late@acme.test>", SendingIP: "192.0.2.1"}
	late.Time, late.Kind = day.Add(-80*time.Hour), metrics.KindSent
	add(late)
	sd.sent++
	late.Time, late.Kind = day, metrics.KindDelivered
	add(late)
	sd.delivered++
	// The previous period: 40 sends 8 days ago.
	for i := range 40 {
		add(metrics.Event{Recipient: fmt.Sprintf("p%d@gmail.com", i), Time: now.Add(-8 * 24 * time.Hour), Kind: metrics.KindSent})
		sd.sentPrevious++
	}
	// A send to a blocklisted address, and one to an address lifted from
	// the blocklist before the send.
	add(metrics.Event{Recipient: "blocked@yahoo.com", Time: day.Add(time.Hour), Kind: metrics.KindSent, MessageID: "<b1@acme.test>"})
	add(metrics.Event{Recipient: "lifted@yahoo.com", Time: day.Add(time.Hour), Kind: metrics.KindSent, MessageID: "<b2@acme.test>"})
	add(metrics.Event{Recipient: "dropped@yahoo.com", Time: day.Add(time.Hour), Kind: metrics.KindDropped, Reason: metrics.DropBlocklisted})
	sd.sent += 2
	if err := s.Append(ctx, events); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(ctx, events); err != nil { // every event a second time: stored twice, counted once
		t.Fatal(err)
	}

	changes := []metrics.SuppressionChange{
		{Time: day.Add(-48 * time.Hour), Action: "added", Address: "blocked@yahoo.com", Account: "acme", Shared: true, List: "blocklist", Reason: "hard_bounce", Since: day.Add(-48 * time.Hour)},
		{Time: day.Add(-48 * time.Hour), Action: "added", Address: "lifted@yahoo.com", Account: "acme", Shared: true, List: "blocklist", Reason: "hard_bounce", Since: day.Add(-48 * time.Hour)},
		{Time: day.Add(-47 * time.Hour), Action: "lifted", Address: "lifted@yahoo.com", Account: "acme", Shared: true, List: "blocklist", Reason: "operator"},
		// The complaint's unsubscribe, stored at once.
		{Time: complaint.Time, Action: "unsubscribed", Address: complaint.Recipient, Account: "acme", SenderDomain: complaint.SenderDomain,
			List: "unsubscribe", Reason: "complaint", EventID: complaint.EventID, Since: now.Add(-time.Hour)},
		// An unsubscribe requested 3 days ago, stored now: over 48 h.
		{Time: now.Add(-72 * time.Hour), Action: "unsubscribed", Address: "slow@gmail.com", Account: "acme", SenderDomain: "news.acme.test",
			List: "unsubscribe", Reason: "list_unsubscribe", Since: now.Add(-72 * time.Hour)},
	}
	for i := range changes {
		changes[i].ID = metrics.SuppressionChangeID(changes[i])
	}
	if err := s.AppendSuppressionChanges(ctx, changes); err != nil {
		t.Fatal(err)
	}

	reasons := `[{"rule":"complaint_rate","value":0.006,"threshold":0.005,"sample":1000,"window":"7d"}]`
	decisions := []metrics.StoredDecision{
		{ID: "d1", Seq: 1, IssuedAt: day.Add(-48 * time.Hour), ExpiresAt: day, SenderDomain: "news.acme.test", SendingIP: "192.0.2.1",
			Action: "advance", WarmupDay: 3, DailyLimit: 500, HourlyLimit: 50, Source: "rule", Reasons: "[]"},
		{ID: "d2", Seq: 2, IssuedAt: day, SenderDomain: "news.acme.test", ISP: "yahoo",
			Action: "pause", WarmupDay: 3, Source: "rule", Reasons: reasons},
		{ID: "d3", Seq: 3, IssuedAt: day.Add(2 * time.Hour), ExpiresAt: now.Add(time.Hour), SenderDomain: "news.acme.test", SendingIP: "192.0.2.2",
			Action: "resume", WarmupDay: 3, DailyLimit: 500, HourlyLimit: 50, Source: "operator", Reasons: "[]"},
	}
	if err := s.AppendDecisions(ctx, decisions); err != nil {
		t.Fatal(err)
	}
	return sd
}

// numeric reports whether a ClickHouse column type is a number.
var numericType = regexp.MustCompile(`^(Nullable\()?(U?Int\d+|Float\d+|Decimal)`)

type result struct {
	columns []string
	types   []string
	rows    [][]any
}

func run(ctx context.Context, conn driver.Conn, sql string) (*result, error) {
	rows, err := conn.Query(ctx, sql)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	r := &result{columns: rows.Columns()}
	cts := rows.ColumnTypes()
	for _, c := range cts {
		r.types = append(r.types, c.DatabaseTypeName())
	}
	for rows.Next() {
		dest := make([]any, len(cts))
		for i, c := range cts {
			dest[i] = reflect.New(c.ScanType()).Interface()
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		row := make([]any, len(dest))
		for i, d := range dest {
			row[i] = reflect.ValueOf(d).Elem().Interface()
		}
		r.rows = append(r.rows, row)
	}
	return r, rows.Err()
}

// shape returns what is wrong with r for a panel of kind.
func shape(panelType string, r *result) string {
	numeric := 0
	for _, ty := range r.types {
		if numericType.MatchString(ty) {
			numeric++
		}
	}
	switch panelType {
	case "timeseries":
		if len(r.columns) < 2 || r.columns[0] != "time" || !strings.HasPrefix(r.types[0], "DateTime") {
			return fmt.Sprintf("columns %v %v: a time series needs a DateTime column named time first", r.columns, r.types)
		}
		if numeric == 0 {
			return fmt.Sprintf("columns %v %v: no numeric column to draw", r.columns, r.types)
		}
	case "stat":
		if numeric != len(r.types) {
			return fmt.Sprintf("columns %v %v: a stat shows numbers only", r.columns, r.types)
		}
		if len(r.rows) != 1 {
			return fmt.Sprintf("%d rows, want 1", len(r.rows))
		}
	case "table":
		if len(r.columns) == 0 {
			return "no column"
		}
	case "annotation":
		if len(r.columns) < 2 || r.columns[0] != "time" || !strings.HasPrefix(r.types[0], "DateTime") || !slices.Contains(r.columns, "text") {
			return fmt.Sprintf("columns %v %v: an annotation needs a DateTime column named time first, and a text column", r.columns, r.types)
		}
	}
	return ""
}

// exactRows are the panels that list breaches (and the throttles in
// force): with the seed, each finds exactly the seeded one.
var exactRows = map[string]int{
	"Unsubscribe requests handled after 48 h (must be none)": 1,
	"Which sends (must be none)":                             1,
	"Active automatic throttles":                             1,
}

func TestPanelsSQL(t *testing.T) {
	addr, db := testenv.ClickHouseDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	store, err := clickhouse.Open(ctx, clickhouse.Options{Addr: addr, Database: db})
	if err != nil {
		t.Fatalf("open and migrate %s: %v", db, err)
	}
	defer store.Close()
	sd := seed(t, store)
	conn, err := ch.Open(&ch.Options{Addr: []string{addr}, Auth: ch.Auth{Database: db}, DialTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	r := Range{From: sd.now.Add(-7 * 24 * time.Hour), To: sd.now.Add(time.Hour), Interval: time.Hour}
	all, files := loadAll(t)
	queries := 0
	for _, f := range files {
		d := all[f]
		// The variables' values, from their own queries.
		options := map[string][]string{}
		for _, v := range d.Templating.List {
			switch v.Type {
			case "query":
				sql, err := Expand(v.Query, nil, r)
				if err != nil {
					t.Fatalf("%s: variable %s: %v", f, v.Name, err)
				}
				res, err := run(ctx, conn, sql)
				if err != nil {
					t.Fatalf("%s: variable %s: %v\n%s", f, v.Name, err, sql)
				}
				for _, row := range res.rows {
					options[v.Name] = append(options[v.Name], fmt.Sprint(row[0]))
				}
				if len(options[v.Name]) == 0 {
					t.Errorf("%s: variable %s has no value on the seeded data", f, v.Name)
				}
			case "textbox", "constant":
				options[v.Name] = []string{v.Query}
			}
		}
		// Every variable set to All, then every variable to its first value.
		modes := map[string]map[string]Variable{"all": {}, "first": {}}
		for name, vals := range options {
			modes["all"][name] = Variable{All: true, Values: vals}
			modes["first"][name] = Variable{Values: vals[:1]}
		}
		type query struct {
			where, panelType, title string
			tg                      Target
		}
		var qs []query
		for _, p := range d.Panels {
			for _, tg := range p.Targets {
				qs = append(qs, query{fmt.Sprintf("%s panel %q %s", f, p.Title, tg.RefID), p.Type, p.Title, tg})
			}
		}
		for _, a := range d.Annotations.List {
			if a.Target != nil {
				// An annotation query is drawn from its time column.
				qs = append(qs, query{fmt.Sprintf("%s annotation %q", f, a.Name), "annotation", a.Name, *a.Target})
			}
		}
		for _, q := range qs {
			if q.tg.Datasource == nil || q.tg.Datasource.Type != ClickHouseType {
				continue
			}
			for mode, vars := range modes {
				sql, err := Expand(q.tg.RawSQL, vars, r)
				if err != nil {
					t.Errorf("%s (%s): %v", q.where, mode, err)
					continue
				}
				res, err := run(ctx, conn, sql)
				queries++
				if err != nil {
					t.Errorf("%s (%s): %v\n%s", q.where, mode, err, sql)
					continue
				}
				if problem := shape(q.panelType, res); problem != "" {
					t.Errorf("%s (%s): %s", q.where, mode, problem)
				}
				if mode != "all" {
					continue
				}
				if want, ok := exactRows[q.title]; ok && len(res.rows) != want {
					t.Errorf("%s: %d rows, want %d: %v", q.where, len(res.rows), want, res.rows)
				} else if len(res.rows) == 0 {
					t.Errorf("%s: no row on the seeded data", q.where)
				}
				checkValues(t, q.where, q.title, res, sd)
			}
		}
	}
	t.Logf("%d queries of %d dashboards ran", queries, len(files))
}

// checkValues checks the numbers of the panels whose answer the seed
// determines.
func checkValues(t *testing.T, where, title string, r *result, sd seeded) {
	t.Helper()
	get := func(col string) any {
		for i, c := range r.columns {
			if c == col && len(r.rows) > 0 {
				v := reflect.ValueOf(r.rows[0][i])
				for v.Kind() == reflect.Pointer && !v.IsNil() {
					v = v.Elem()
				}
				return v.Interface()
			}
		}
		return nil
	}
	switch title {
	case "Sent":
		// Each event was stored twice: FINAL counts it once.
		if got, prev := get("this period"), get("previous period"); fmt.Sprint(got) != fmt.Sprint(sd.sent) || fmt.Sprint(prev) != fmt.Sprint(sd.sentPrevious) {
			t.Errorf("%s: this period %v, previous %v; want %d, %d", where, got, prev, sd.sent, sd.sentPrevious)
		}
	case "Complaint %":
		want := float64(sd.complaints) / float64(sd.delivered)
		if got, ok := get("this period").(float64); !ok || got != want {
			t.Errorf("%s: %v, want %d / %d = %v", where, get("this period"), sd.complaints, sd.delivered, want)
		}
	case "Sends to suppressed addresses (must be 0)":
		if got := get("sends to suppressed addresses"); fmt.Sprint(got) != "1" {
			t.Errorf("%s: %v, want the 1 seeded send to a blocklisted address (not the lifted one)", where, got)
		}
	case "Delivery latency by provider (sent → delivered)":
		over := int64(0)
		for i, c := range r.columns {
			if c == "over 72 h" {
				for _, row := range r.rows {
					over += reflect.ValueOf(row[i]).Convert(reflect.TypeFor[int64]()).Int()
				}
			}
		}
		if over != 1 {
			t.Errorf("%s: %d deliveries over 72 h, want the 1 seeded", where, over)
		}
	case "Latest complaints":
		for i, c := range r.columns {
			if c == "action taken" && !strings.Contains(fmt.Sprint(r.rows), "unsubscribe: unsubscribed") {
				t.Errorf("%s: column %d: no complaint shows the unsubscribe it caused: %v", where, i, r.rows)
			}
		}
	}
}
