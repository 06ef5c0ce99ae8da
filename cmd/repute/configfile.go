package main

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// readConfigFile decodes a YAML configuration file into cfg. A misspelt key
// is an error naming its line and the key it probably meant; a value of the
// wrong type says what is expected in plain words.
func readConfigFile(name string, cfg *serveConfig) error {
	raw, err := os.ReadFile(name)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return fmt.Errorf("config %s: %w", name, err)
	}
	if err := decodeYAML(raw, cfg); err != nil {
		return fmt.Errorf("config %s: %w", name, err)
	}
	cfg.fileKeys = topLevelKeys(raw)
	return nil
}

// decodeYAML decodes a YAML document into the struct v points to, through
// decodeNode. An empty document sets nothing.
func decodeYAML(raw []byte, v any) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return errors.New(strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if len(doc.Content) == 0 {
		return nil
	}
	return decodeNode(doc.Content[0], reflect.ValueOf(v).Elem(), "")
}

// topLevelKeys returns the keys present at the top of a YAML mapping.
func topLevelKeys(raw []byte) map[string]bool {
	var doc yaml.Node
	keys := map[string]bool{}
	if yaml.Unmarshal(raw, &doc) != nil || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return keys
	}
	m := doc.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		keys[m.Content[i].Value] = true
	}
	return keys
}

var (
	durationType    = reflect.TypeFor[time.Duration]()
	secretType      = reflect.TypeFor[secret]()
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
)

// decodeNode decodes n into v. Structs are sections: each key must be a
// field's yaml name, or X_env / X_file for a secret field X. path names v
// in messages ("", "bounce_phrases[0]").
func decodeNode(n *yaml.Node, v reflect.Value, path string) error {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Tag == "!!null" {
		return nil
	}
	t := v.Type()
	if reflect.PointerTo(t).Implements(unmarshalerType) || t.Implements(unmarshalerType) {
		return decodeScalar(n, v, path)
	}
	switch {
	case t.Kind() == reflect.Struct && t != secretType:
		if n.Kind != yaml.MappingNode {
			return typeError(n, path, t)
		}
		fields := sectionFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			f, ok := fields[k.Value]
			if !ok {
				return unknownKeyError(k, path, t, fields)
			}
			fv := v.FieldByIndex(f.index)
			if f.part != "" { // X_env or X_file of a secret field
				s := fv.Addr().Interface().(*secret)
				s.name = strings.TrimSuffix(strings.TrimSuffix(k.Value, "_env"), "_file")
				dst := &s.Env
				if f.part == "file" {
					dst = &s.File
				}
				if err := decodeScalar(val, reflect.ValueOf(dst).Elem(), join(path, k.Value)); err != nil {
					return err
				}
				continue
			}
			if f.secret { // a plain value where a secret is expected
				return fmt.Errorf("line %d: %s: a secret is never a plain value in the file: use %s_env: NAME (an environment variable) or %s_file: PATH (a file only its owner can read)",
					k.Line, join(path, k.Value), k.Value, k.Value)
			}
			if err := decodeNode(val, fv, join(path, k.Value)); err != nil {
				return err
			}
		}
		return nil
	case t.Kind() == reflect.Slice && isSection(t.Elem()):
		if n.Kind != yaml.SequenceNode {
			return typeError(n, path, t)
		}
		s := reflect.MakeSlice(t, len(n.Content), len(n.Content))
		for i, item := range n.Content {
			if err := decodeNode(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		v.Set(s)
		return nil
	case t.Kind() == reflect.Map && isSection(t.Elem()):
		if n.Kind != yaml.MappingNode {
			return typeError(n, path, t)
		}
		if v.IsNil() {
			v.Set(reflect.MakeMap(t))
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			kv := reflect.New(t.Key()).Elem()
			if err := decodeScalar(k, kv, path); err != nil {
				return err
			}
			ev := reflect.New(t.Elem()).Elem()
			if err := decodeNode(val, ev, join(path, k.Value)); err != nil {
				return err
			}
			v.SetMapIndex(kv, ev)
		}
		return nil
	}
	return decodeScalar(n, v, path)
}

// isSection reports whether t is decoded key by key (a struct of ours).
func isSection(t reflect.Type) bool {
	return t.Kind() == reflect.Struct && t != secretType && !reflect.PointerTo(t).Implements(unmarshalerType)
}

// decodeScalar decodes n into v with yaml.v3, and turns its error (which
// speaks Go: "cannot unmarshal !!str `lots` into int64") into plain words.
func decodeScalar(n *yaml.Node, v reflect.Value, path string) error {
	if err := n.Decode(v.Addr().Interface()); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			return typeError(n, path, v.Type())
		}
		return fmt.Errorf("line %d: %s: %s", n.Line, path, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	return nil
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// typeError says which key holds a value of the wrong type and what it
// should be.
func typeError(n *yaml.Node, path string, t reflect.Type) error {
	var got string
	switch n.Kind {
	case yaml.MappingNode:
		got = "a section of key: value lines"
	case yaml.SequenceNode:
		got = "a list"
	default:
		got = fmt.Sprintf("%q", n.Value)
	}
	return fmt.Errorf("line %d: %s: expected %s, got %s", n.Line, path, describeType(t), got)
}

// describeType names what a value of type t looks like in the file, in
// words an operator uses rather than Go's.
func describeType(t reflect.Type) string {
	if t == durationType {
		return "a duration such as 30s, 5m or 1h30m"
	}
	switch t.Kind() {
	case reflect.String:
		return "text"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "a whole number"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number, 0 or more"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "a list of " + plural(describeType(t.Elem()))
	case reflect.Map:
		return "a section of key: value lines"
	case reflect.Struct:
		return "a section of key: value lines"
	}
	return "a different kind of value"
}

func plural(s string) string {
	switch {
	case s == "text":
		return "texts"
	case strings.HasPrefix(s, "a section"):
		return "sections"
	case strings.HasPrefix(s, "a whole number"):
		return "whole numbers" + strings.TrimPrefix(s, "a whole number")
	case strings.HasPrefix(s, "a duration"):
		return "durations"
	}
	return s
}

// field is where a YAML key of a section goes.
type field struct {
	index  []int
	part   string // "env" or "file" for the two keys of a secret field
	secret bool   // the bare name of a secret field: refused
}

// sectionFields maps the YAML keys of struct type t to its fields.
func sectionFields(t reflect.Type) map[string]field {
	out := map[string]field{}
	var secrets []reflect.StructField
	for _, sf := range reflect.VisibleFields(t) {
		if !sf.IsExported() || sf.Anonymous {
			continue
		}
		name, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(sf.Name)
		}
		if sf.Type == secretType {
			out[name+"_env"] = field{index: sf.Index, part: "env"}
			out[name+"_file"] = field{index: sf.Index, part: "file"}
			sf.Name = name
			secrets = append(secrets, sf)
			continue
		}
		out[name] = field{index: sf.Index}
	}
	for _, sf := range secrets {
		if _, ok := out[sf.Name]; !ok {
			out[sf.Name] = field{index: sf.Index, secret: true}
		}
	}
	return out
}

func unknownKeyError(k *yaml.Node, path string, t reflect.Type, fields map[string]field) error {
	var known []string
	for name, f := range fields {
		if !f.secret {
			known = append(known, name)
		}
	}
	sort.Strings(known)
	where := ""
	if path != "" {
		where = path + ": "
	}
	msg := fmt.Sprintf("line %d: %sunknown key %q", k.Line, where, k.Value)
	if s := closest(k.Value, known); s != "" {
		msg += fmt.Sprintf(" (did you mean %s?)", s)
	} else if path != "" {
		msg += " (known keys: " + strings.Join(known, ", ") + ")"
	}
	return errors.New(msg)
}

// closest returns the candidate nearest to s in edit distance, if it is
// near enough to be a likely misspelling; "" otherwise.
func closest(s string, candidates []string) string {
	best, bestD := "", -1
	for _, c := range candidates {
		d := levenshtein(s, c)
		if bestD < 0 || d < bestD {
			best, bestD = c, d
		}
	}
	limit := max(1, min(3, len(s)/3))
	if bestD < 0 || bestD > limit {
		return ""
	}
	return best
}

// levenshtein is the edit distance between a and b, in bytes (keys are
// ASCII).
func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
