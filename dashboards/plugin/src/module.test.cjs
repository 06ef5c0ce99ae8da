// node --test for module.js against the npm packages Grafana supplies at
// run time (@grafana/data, @grafana/runtime, @grafana/ui 13.2.3, react),
// which make plugin-test installs into .cache/grafana-node (NODE_PATH).
// @grafana/ui expects a browser: jsdom stands in for it, and
// NODE_ENV=production skips its debug hooks.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const { JSDOM } = require('jsdom');
const dom = new JSDOM('<!doctype html><html><head></head><body></body></html>', { url: 'http://localhost/' });
dom.window.matchMedia = () => ({ matches: false, addListener() {}, removeListener() {}, addEventListener() {}, removeEventListener() {} });
// Node's own Event, EventTarget and navigator would not do for jsdom's DOM.
const force = new Set(['navigator', 'Event', 'CustomEvent', 'EventTarget', 'MessageEvent']);
for (const k of Object.getOwnPropertyNames(dom.window)) {
  if (k in globalThis && !force.has(k)) continue;
  try {
    Object.defineProperty(globalThis, k, { value: dom.window[k], configurable: true, writable: true });
  } catch {}
}
globalThis.window = dom.window;
require.extensions['.css'] = (m) => {
  m.exports = {};
};

const grafanaData = require('@grafana/data');
const runtime = require('@grafana/runtime');
const React = require('react');
const { renderToStaticMarkup } = require('react-dom/server');
const { of, lastValueFrom } = require('rxjs');

const source = fs.readFileSync(path.join(__dirname, 'module.js'), 'utf8');

// load evaluates module.js as Grafana's AMD loader does: define(deps,
// factory) with the shared modules by name.
function load() {
  const shared = { '@grafana/data': grafanaData, '@grafana/runtime': runtime, '@grafana/ui': require('@grafana/ui'), react: React };
  let exported;
  let deps;
  const define = (d, factory) => {
    deps = d;
    exported = factory(...d.map((name) => shared[name]));
  };
  define.amd = true;
  new Function('define', source)(define);
  return { exported, deps };
}

const { exported: mod, deps } = load();

const settings = {
  id: 1,
  uid: 'repute',
  type: 'repute-deliverability-datasource',
  name: 'repute',
  access: 'proxy',
  readOnly: false,
  jsonData: { url: 'http://127.0.0.1:8080' },
  meta: { id: 'repute-deliverability-datasource', name: 'repute', type: 'datasource', info: {}, module: '', baseUrl: '' },
};

// A template service holding variables by name (what Grafana's does, for
// the forms the data source uses: $name and ${name}).
function templateSrv(vars) {
  return {
    getVariables: () => [],
    containsTemplate: (t) => /\$/.test(t || ''),
    updateTimeRange() {},
    replace(target, scopedVars, format) {
      return String(target).replace(/\$\{(\w+)\}|\$(\w+)/g, (m, a, b) => {
        const name = a || b;
        const scoped = scopedVars && scopedVars[name];
        const value = scoped ? scoped.value : vars[name];
        if (value === undefined) return m;
        return typeof format === 'function' ? format(value) : String(value);
      });
    },
  };
}

test('an AMD module Grafana can load, without System.register(', () => {
  assert.deepEqual(deps, ['@grafana/data', '@grafana/runtime', '@grafana/ui', 'react']);
  assert.ok(!source.includes('System.register' + '('), 'module.js must not contain System.register(');
  assert.ok(mod.plugin instanceof grafanaData.DataSourcePlugin);
  assert.equal(mod.plugin.DataSourceClass, mod.ReputeDataSource);
  assert.ok(mod.ReputeDataSource.prototype instanceof runtime.DataSourceWithBackend);
  assert.equal(mod.plugin.components.QueryEditor, mod.QueryEditor);
  assert.equal(mod.plugin.components.ConfigEditor, mod.ConfigEditor);
});

test('template variables fill filters and scopes; All or several values filter nothing', () => {
  runtime.setTemplateSrv(templateSrv({ isp: 'gmail', sender_domain: ['a.example', 'b.example'], ip: '192.0.2.1' }));
  const ds = new mod.ReputeDataSource(settings);
  const q = ds.applyTemplateVariables(
    { refId: 'A', queryType: 'stats', metrics: ['sent'], filters: { isp: '$isp', sender_domain: '${sender_domain}', campaign: '' } },
    {}
  );
  assert.deepEqual(q.filters, { isp: 'gmail' });
  const scoped = ds.applyTemplateVariables({ refId: 'A', queryType: 'flags', senderDomain: '$sd', sendingIp: '$ip' }, { sd: { value: 'news.example' } });
  assert.equal(scoped.senderDomain, 'news.example');
  assert.equal(scoped.sendingIp, '192.0.2.1');
  assert.equal(scoped.isp, '');
});

test('a suppression lookup without an address is not sent', () => {
  const ds = new mod.ReputeDataSource(settings);
  assert.equal(ds.filterQuery({ refId: 'A', queryType: 'suppression', address: ' ' }), false);
  assert.equal(ds.filterQuery({ refId: 'A', queryType: 'suppression', address: 'a@b.example' }), true);
  assert.equal(ds.filterQuery({ refId: 'A', queryType: 'stats', hide: true }), false);
  assert.equal(ds.filterQuery({ refId: 'A', queryType: 'stats' }), true);
});

test('a query variable lists a dimension from the backend', async () => {
  const ds = new mod.ReputeDataSource(settings);
  const asked = [];
  ds.getResource = (p) => {
    asked.push(p);
    return Promise.resolve([{ label: 'gmail', value: 'gmail' }, { label: 'yahoo', value: 'yahoo' }]);
  };
  assert.deepEqual(await ds.metricFindQuery(' isp '), [
    { text: 'gmail', value: 'gmail' },
    { text: 'yahoo', value: 'yahoo' },
  ]);
  await ds.metricFindQuery({ query: 'sender_domain' });
  assert.deepEqual(asked, ['options/isp', 'options/sender_domain']);
});

test('queries reach /api/ds/query interpolated, with the data source uid, and frames come back', async () => {
  runtime.setTemplateSrv(templateSrv({ isp: 'yahoo' }));
  let sent;
  runtime.setBackendSrv({
    fetch(opts) {
      sent = opts;
      const frame = grafanaData.dataFrameToJSON(
        grafanaData.toDataFrame({ fields: [{ name: 'time', type: 'time', values: [0] }, { name: 'sent', type: 'number', values: [5] }] })
      );
      return of({ data: { results: { A: { status: 200, frames: [frame] } } }, status: 200, ok: true });
    },
  });
  const ds = new mod.ReputeDataSource(settings);
  const range = { from: grafanaData.dateTime(0), to: grafanaData.dateTime(3600000), raw: { from: 'now-1h', to: 'now' } };
  const res = await lastValueFrom(
    ds.query({
      // (filterQuery is applied before, by Grafana's query runner.)
      targets: [{ refId: 'A', queryType: 'stats', metrics: ['sent'], filters: { isp: '$isp' } }],
      range,
      scopedVars: {},
      interval: '1m',
      intervalMs: 60000,
      maxDataPoints: 100,
      app: 'dashboard',
      requestId: 'r1',
      timezone: 'utc',
      startTime: 0,
    })
  );
  assert.match(sent.url, /^\/api\/ds\/query(\?|$)/);
  assert.equal(sent.data.queries.length, 1);
  const q = sent.data.queries[0];
  assert.equal(q.refId, 'A');
  assert.deepEqual(q.filters, { isp: 'yahoo' });
  assert.equal(q.datasource.uid, 'repute');
  assert.equal(res.data.length, 1);
  assert.equal(res.data[0].fields[1].name, 'sent');
});

test('the query editor shows the fields of each query type', () => {
  const ds = new mod.ReputeDataSource(settings);
  ds.getResource = () => Promise.resolve([]);
  const render = (query) =>
    renderToStaticMarkup(React.createElement(mod.QueryEditor, { query, datasource: ds, onChange() {}, onRunQuery() {} }));
  const stats = render({ refId: 'A', queryType: 'stats', filters: { isp: '$isp' } });
  for (const label of ['Query type', 'Metrics', 'Group by', 'Format', 'Bucket', 'Filters']) {
    assert.ok(stats.includes('>' + label + '<'), 'stats editor lacks ' + label);
  }
  assert.ok(stats.includes('value="isp=$isp"'), 'the filters are shown as text');
  const lookup = render({ refId: 'A', queryType: 'suppression', address: 'a@b.example' });
  assert.ok(lookup.includes('value="a@b.example"'));
  assert.ok(!lookup.includes('>Metrics<'));
  const flags = render({ refId: 'A', queryType: 'flags' });
  for (const label of ['Sender domain', 'Sending IP', 'Provider']) {
    assert.ok(flags.includes('>' + label + '<'), 'flags editor lacks ' + label);
  }
});

test('the settings page edits the URL and keeps the key secret', () => {
  let changed;
  const options = { ...settings, jsonData: { url: 'http://repute:8080' }, secureJsonFields: { apiKey: true }, secureJsonData: {} };
  const html = renderToStaticMarkup(React.createElement(mod.ConfigEditor, { options, onOptionsChange: (o) => (changed = o) }));
  assert.ok(html.includes('value="http://repute:8080"'));
  assert.ok(html.includes('configured'), 'a stored key shows as configured');
  assert.equal(changed, undefined);
});

test('filters round-trip through their text form', () => {
  assert.deepEqual(mod.parseFilters('isp=gmail, sender_domain = $sd ,bad'), { isp: 'gmail', sender_domain: '$sd' });
  assert.equal(mod.filtersText({ isp: 'gmail', campaign: 'x' }), 'isp=gmail, campaign=x');
});
