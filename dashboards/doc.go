// Package dashboards holds the Grafana dashboards, their provisioning and the
// backend data source plugin.
package dashboards
