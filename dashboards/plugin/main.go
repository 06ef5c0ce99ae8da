// Command gpx_repute is the backend of the Grafana data source
// repute-deliverability-datasource. Grafana starts it (hashicorp/go-plugin
// over gRPC) and talks to it; run by hand it exits, as it lacks the
// handshake Grafana gives it. Build it with make plugin.
package main

import (
	"os"

	"github.com/grafana/grafana-plugin-sdk-go/backend/datasource"
	"github.com/grafana/grafana-plugin-sdk-go/backend/log"

	"repute/dashboards/plugin/reputeds"
)

func main() {
	if err := datasource.Manage(reputeds.PluginID, reputeds.New, datasource.ManageOpts{}); err != nil {
		log.DefaultLogger.Error("repute data source stopped", "error", err.Error())
		os.Exit(1)
	}
}
