package dashboards

// Our expander of a SQL panel's query, as Grafana and the official
// ClickHouse data source (grafana-clickhouse-datasource v4) turn it into
// the SQL ClickHouse receives, so that make grafana-check can run every
// panel's query. Grafana cannot be installed here (docs/GRAFANA.md), so this
// mirrors, in three steps and in their order:
//
//  1. $__conditionalAll(condition, $var), which the data source's frontend
//     applies first: 1=1 when the variable is All (or empty), else the
//     condition;
//  2. template variables ($var, ${var}, ${var:format}, [[var]]), which
//     Grafana's template service replaces: a single value as it is, several
//     only through a format that lists them (singlequote, sqlstring, csv);
//  3. the data source's backend macros: $__timeFilter(col) →
//     col >= toDateTime(from) AND col <= toDateTime(to), $__dateFilter(col),
//     $__fromTime, $__toTime → toDateTime(unix seconds), $__interval_s →
//     the interval in whole seconds (at least 1).
//
// The macros that expand to functions ClickHouse 18.16 lacks ($__timeInterval,
// $__timeGroup and every *_ms one: toStartOfInterval, fromUnixTimestamp64Milli,
// DateTime64) are refused, naming the portable replacement, as is any other
// $__ name: a dashboard that used one would fail on 18.16.

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Variable is a template variable's current value: All (every value of
// Values, which then lists the variable's options) or the values chosen.
type Variable struct {
	All    bool
	Values []string
}

// Range is the dashboard's time range and the panel's interval.
type Range struct {
	From, To time.Time
	Interval time.Duration
}

// unsupported are the data source's macros that expand to functions
// ClickHouse 18.16 lacks.
var unsupported = map[string]string{
	"$__timeInterval":    "toDateTime(intDiv(toUInt32(col), $__interval_s) * $__interval_s)",
	"$__timeInterval_ms": "toDateTime(intDiv(toUInt32(col), $__interval_s) * $__interval_s)",
	"$__timeGroup":       "toDateTime(intDiv(toUInt32(col), $__interval_s) * $__interval_s)",
	"$__timeFilter_ms":   "$__timeFilter(col)",
	"$__fromTime_ms":     "$__fromTime",
	"$__toTime_ms":       "$__toTime",
	"$__interval_ms":     "$__interval_s",
	"$__dateTimeFilter":  "$__timeFilter(col)",
	"$__dt":              "$__timeFilter(col)",
}

// Expand returns sql as ClickHouse would receive it.
func Expand(sql string, vars map[string]Variable, r Range) (string, error) {
	sql, err := expandConditionalAll(sql, vars)
	if err != nil {
		return "", err
	}
	if sql, err = expandVariables(sql, vars); err != nil {
		return "", err
	}
	return expandMacros(sql, r)
}

// macroArgs parses the arguments of a macro call whose "(" is at open:
// split on the commas outside parentheses and quotes. It returns them and
// the index after the closing ")".
func macroArgs(s string, open int) ([]string, int, error) {
	depth, start := 0, open+1
	var args []string
	var quote byte
	for i := open; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == '\\' {
				i++
			} else if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"' || c == '`':
			quote = c
		case c == '(':
			depth++
		case c == ')':
			depth--
			if depth == 0 {
				return append(args, strings.TrimSpace(s[start:i])), i + 1, nil
			}
		case c == ',' && depth == 1:
			args = append(args, strings.TrimSpace(s[start:i]))
			start = i + 1
		}
	}
	return nil, 0, fmt.Errorf("unclosed parenthesis after %q", s[:open])
}

var varName = regexp.MustCompile(`^\$\{?(\w+)`)

func expandConditionalAll(sql string, vars map[string]Variable) (string, error) {
	const macro = "$__conditionalAll("
	for {
		i := strings.Index(sql, macro)
		if i < 0 {
			return sql, nil
		}
		args, end, err := macroArgs(sql, i+len(macro)-1)
		if err != nil {
			return "", fmt.Errorf("$__conditionalAll: %w", err)
		}
		if len(args) != 2 {
			return "", fmt.Errorf("$__conditionalAll takes (condition, $variable), got %d arguments", len(args))
		}
		m := varName.FindStringSubmatch(args[1])
		if m == nil {
			return "", fmt.Errorf("$__conditionalAll: %q is not a $variable", args[1])
		}
		v, ok := vars[m[1]]
		if !ok {
			return "", fmt.Errorf("$__conditionalAll: variable %q is not defined", m[1])
		}
		phrase := args[0]
		if v.All || len(v.Values) == 0 || len(v.Values) == 1 && v.Values[0] == "" {
			phrase = "1=1"
		}
		sql = sql[:i] + phrase + sql[end:]
	}
}

// variableRef matches Grafana's variable syntaxes; names beginning with __
// are Grafana's or the data source's own and left for the next step.
var variableRef = regexp.MustCompile(`\$\{(\w+)(?::(\w+))?\}|\[\[(\w+)(?::(\w+))?\]\]|\$(\w+)`)

func expandVariables(sql string, vars map[string]Variable) (string, error) {
	var err error
	out := variableRef.ReplaceAllStringFunc(sql, func(ref string) string {
		m := variableRef.FindStringSubmatch(ref)
		name, format := m[1]+m[3]+m[5], m[2]+m[4]
		if strings.HasPrefix(name, "__") {
			return ref
		}
		v, ok := vars[name]
		if !ok {
			if err == nil {
				err = fmt.Errorf("variable %q is not defined", name)
			}
			return ref
		}
		s, ferr := format1(v.Values, format)
		if ferr != nil && err == nil {
			err = fmt.Errorf("%s: %w", ref, ferr)
		}
		return s
	})
	return out, err
}

// format1 formats a variable's values as Grafana's template service does
// for the formats SQL needs.
func format1(vals []string, format string) (string, error) {
	quoted := func(q func(string) string) string {
		out := make([]string, len(vals))
		for i, v := range vals {
			out[i] = q(v)
		}
		return strings.Join(out, ",")
	}
	switch format {
	case "singlequote":
		return quoted(func(v string) string { return "'" + strings.ReplaceAll(v, "'", `\'`) + "'" }), nil
	case "sqlstring":
		return quoted(func(v string) string { return "'" + strings.ReplaceAll(v, "'", "''") + "'" }), nil
	case "csv":
		return strings.Join(vals, ","), nil
	case "", "raw", "text":
		if len(vals) != 1 {
			// Grafana would write {a,b}, which is no SQL.
			return "", fmt.Errorf("%d values need a format that lists them (${var:singlequote})", len(vals))
		}
		return vals[0], nil
	}
	return "", fmt.Errorf("format %q is not one make grafana-check knows (singlequote, sqlstring, csv, raw)", format)
}

var macroRef = regexp.MustCompile(`\$__\w+`)

func expandMacros(sql string, r Range) (string, error) {
	from, to := r.From.UTC().Unix(), r.To.UTC().Unix()
	interval := max(int64(r.Interval/time.Second), 1)
	var b strings.Builder
	for {
		loc := macroRef.FindStringIndex(sql)
		if loc == nil {
			b.WriteString(sql)
			return b.String(), nil
		}
		name := sql[loc[0]:loc[1]]
		b.WriteString(sql[:loc[0]])
		rest := sql[loc[1]:]
		if hint, ok := unsupported[name]; ok {
			return "", fmt.Errorf("%s expands to functions ClickHouse 18.16 lacks: use %s", name, hint)
		}
		switch name {
		case "$__fromTime":
			b.WriteString("toDateTime(" + strconv.FormatInt(from, 10) + ")")
		case "$__toTime":
			b.WriteString("toDateTime(" + strconv.FormatInt(to, 10) + ")")
		case "$__interval_s":
			b.WriteString(strconv.FormatInt(interval, 10))
		case "$__timeFilter", "$__dateFilter":
			if !strings.HasPrefix(rest, "(") {
				return "", fmt.Errorf("%s needs a column: %s(col)", name, name)
			}
			args, end, err := macroArgs(rest, 0)
			if err != nil {
				return "", fmt.Errorf("%s: %w", name, err)
			}
			if len(args) != 1 || args[0] == "" {
				return "", fmt.Errorf("%s takes one column, got %q", name, args)
			}
			col := args[0]
			if name == "$__timeFilter" {
				fmt.Fprintf(&b, "%s >= toDateTime(%d) AND %s <= toDateTime(%d)", col, from, col, to)
			} else {
				fmt.Fprintf(&b, "%s >= toDate('%s') AND %s <= toDate('%s')", col, r.From.UTC().Format(time.DateOnly),
					col, r.To.UTC().Format(time.DateOnly))
			}
			rest = rest[end:]
		default:
			return "", fmt.Errorf("unknown macro %s (the ClickHouse data source's that work on 18.16: $__timeFilter, $__dateFilter, $__fromTime, $__toTime, $__interval_s, $__conditionalAll)", name)
		}
		sql = rest
	}
}
