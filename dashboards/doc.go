// Package dashboards holds repute's Grafana side (issue 15, README.md
// "Grafana"):
//
//   - grafana/*.json: the dashboards (Deliverability overview, Warm-up and
//     throttles, Complaints/unsubscribes/evidence), over the official
//     ClickHouse data source and repute's own;
//   - provisioning/{datasources,dashboards}/*.yaml: their provisioning,
//     with the data sources' fixed uids;
//   - plugin/: the backend data source plugin
//     repute-deliverability-datasource, a Go module of its own (make plugin);
//   - cmd/layout: draws each dashboard's layout for docs/grafana-*.png.
//
// The package's code is what make grafana-check needs: Load (strict
// decoding of the dashboards) and Expand (the data source's macros and
// Grafana's variables, as ClickHouse receives them); its tests lint every
// dashboard and run every SQL panel on the test ClickHouse.
package dashboards
