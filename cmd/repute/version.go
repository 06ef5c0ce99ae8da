package main

import (
	"fmt"
	"io"
	"runtime/debug"
)

// version is set at build time with
// -ldflags "-X main.version=v1.2.3"; empty: read from the build info.
var version string

func init() {
	commands["version"] = command{"print the version", func(_ []string, stdout, _ io.Writer) int {
		fmt.Fprintln(stdout, "repute", buildVersion())
		return 0
	}}
}

// buildVersion is the version of this binary: the -X override, else the
// module version, else the VCS revision the binary was built from
// ("+dirty" when the tree had changes), else "devel".
func buildVersion() string {
	if version != "" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	return versionFrom(info)
}

func versionFrom(info *debug.BuildInfo) string {
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev == "" {
		return "devel"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if modified == "true" {
		rev += "+dirty"
	}
	return rev
}
