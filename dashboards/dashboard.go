package dashboards

// The parts of Grafana's dashboard JSON (schemaVersion 41) the dashboards
// use, decoded strictly: a field not listed here is an error, so a typo
// ("gridpos", "rawSQL") cannot pass the lint unnoticed. options and
// fieldConfig are the panel plugins' own and left free.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// Dashboard is a dashboard file of grafana/.
type Dashboard struct {
	UID           string `json:"uid"`
	Title         string `json:"title"`
	Description   string `json:"description"`
	Tags          []string
	SchemaVersion int  `json:"schemaVersion"`
	Version       int  `json:"version"`
	Editable      bool `json:"editable"`
	GraphTooltip  int  `json:"graphTooltip"`
	Timezone      string
	Refresh       string
	Time          struct{ From, To string }
	Templating    struct {
		List []TemplateVar `json:"list"`
	} `json:"templating"`
	Annotations struct {
		List []Annotation `json:"list"`
	} `json:"annotations"`
	Links  []json.RawMessage `json:"links"`
	Panels []Panel           `json:"panels"`
}

// Datasource names a data source by its type and provisioned uid.
type Datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// TemplateVar is a dashboard variable.
type TemplateVar struct {
	Type        string          `json:"type"`
	Name        string          `json:"name"`
	Label       string          `json:"label"`
	Description string          `json:"description"`
	Datasource  *Datasource     `json:"datasource"`
	Query       string          `json:"query"`
	Definition  string          `json:"definition"`
	Refresh     int             `json:"refresh"`
	IncludeAll  bool            `json:"includeAll"`
	Multi       bool            `json:"multi"`
	Current     json.RawMessage `json:"current"`
	Sort        int             `json:"sort"`
	Options     []any           `json:"options"`
	Hide        int             `json:"hide"`
}

// Annotation is an annotation query.
type Annotation struct {
	BuiltIn    int         `json:"builtIn"`
	Datasource *Datasource `json:"datasource"`
	Enable     bool        `json:"enable"`
	Hide       bool        `json:"hide"`
	IconColor  string      `json:"iconColor"`
	Name       string      `json:"name"`
	Type       string      `json:"type"`
	Target     *Target     `json:"target"`
}

// Panel is a panel.
type Panel struct {
	ID          int         `json:"id"`
	Type        string      `json:"type"`
	Title       string      `json:"title"`
	Description string      `json:"description"`
	Datasource  *Datasource `json:"datasource"`
	GridPos     struct {
		X, Y, W, H int
	} `json:"gridPos"`
	Targets     []Target        `json:"targets"`
	FieldConfig json.RawMessage `json:"fieldConfig"`
	Options     json.RawMessage `json:"options"`
}

// Target is a panel's query: the ClickHouse data source's fields, or the
// repute data source's (module.js's query editor).
type Target struct {
	RefID      string      `json:"refId"`
	Datasource *Datasource `json:"datasource"`
	Hide       bool        `json:"hide"`
	// grafana-clickhouse-datasource: editorType "sql", queryType
	// "timeseries" or "table", format 0 (time series) or 1 (table).
	EditorType string `json:"editorType"`
	Format     *int   `json:"format"`
	QueryType  string `json:"queryType"`
	RawSQL     string `json:"rawSql"`
	// repute-deliverability-datasource.
	Metrics      []string          `json:"metrics"`
	GroupBy      []string          `json:"groupBy"`
	Bucket       string            `json:"bucket"`
	Filters      map[string]string `json:"filters"`
	SenderDomain string            `json:"senderDomain"`
	SendingIP    string            `json:"sendingIp"`
	ISP          string            `json:"isp"`
	Address      string            `json:"address"`
}

// The data source types of the dashboards.
const (
	ClickHouseType = "grafana-clickhouse-datasource"
	ReputeType     = "repute-deliverability-datasource"
)

// Load decodes every grafana/*.json under dir, strictly, sorted by file
// name.
func Load(dir string) (map[string]*Dashboard, []string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "grafana", "*.json"))
	if err != nil {
		return nil, nil, err
	}
	sort.Strings(files)
	out := map[string]*Dashboard{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, nil, err
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		var d Dashboard
		if err := dec.Decode(&d); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", f, err)
		}
		out[f] = &d
	}
	return out, files, nil
}
