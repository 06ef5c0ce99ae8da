// The browser side of the repute-deliverability-datasource plugin: the data
// source class (queries go to the Go backend through Grafana), its query
// editor and its settings page. Hand-written AMD: Grafana loads it and
// supplies @grafana/data, @grafana/runtime, @grafana/ui and react as
// shared modules, so there is no build step. (Never write the string
// S-y-s-t-e-m.register( here: Grafana would take the module for an
// Angular plugin and refuse it.)
define(['@grafana/data', '@grafana/runtime', '@grafana/ui', 'react'], function (data, runtime, ui, React) {
  'use strict';
  var h = React.createElement;

  var QUERY_TYPES = [
    { label: 'Statistics', value: 'stats', description: 'counts and rates of GET /v1/stats, any grouping' },
    { label: 'Active flags', value: 'flags', description: "the rule engine's flags in force" },
    { label: 'Decisions', value: 'decisions', description: 'the throttle decisions in force (also as annotations)' },
    { label: 'Suppression lookup', value: 'suppression', description: 'the blocklist and unsubscribe entries of an address' },
  ];
  var FORMATS = [
    { label: 'Time series', value: 'time_series' },
    { label: 'Table', value: 'table' },
  ];
  var BUCKETS = [
    { label: 'Auto (hour up to 7 days)', value: '' },
    { label: 'Hour', value: 'hour' },
    { label: 'Day', value: 'day' },
  ];

  var DEFAULT_QUERY = { queryType: 'stats', metrics: ['sent'], groupBy: [], format: 'time_series', bucket: '', filters: {} };

  // oneValue is how a template variable enters a filter: a single value
  // as it is; several (a multi-value variable, or All) filter nothing.
  function oneValue(value) {
    if (Array.isArray(value)) {
      return value.length === 1 ? String(value[0]) : '';
    }
    return value === '$__all' ? '' : String(value);
  }

  class ReputeDataSource extends runtime.DataSourceWithBackend {
    constructor(instanceSettings) {
      super(instanceSettings);
      // Decisions queries draw as annotations (time, timeEnd, text).
      this.annotations = {};
    }

    getDefaultQuery() {
      return Object.assign({}, DEFAULT_QUERY);
    }

    // A suppression lookup without an address is not sent.
    filterQuery(query) {
      if (query.hide) {
        return false;
      }
      if (query.queryType === 'suppression') {
        return typeof query.address === 'string' && query.address.trim() !== '';
      }
      return true;
    }

    // Template variables in the filters and scope fields; alert rules run
    // without a browser, so they get the query as saved.
    applyTemplateVariables(query, scopedVars) {
      var srv = runtime.getTemplateSrv();
      function replace(v) {
        return typeof v === 'string' && v !== '' ? srv.replace(v, scopedVars, oneValue) : v || '';
      }
      var filters = {};
      Object.keys(query.filters || {}).forEach(function (k) {
        var v = replace(query.filters[k]);
        if (v !== '') {
          filters[k] = v;
        }
      });
      return Object.assign({}, query, {
        filters: filters,
        senderDomain: replace(query.senderDomain),
        sendingIp: replace(query.sendingIp),
        isp: replace(query.isp),
        address: replace(query.address),
      });
    }

    // A query variable names a dimension (sender_domain, isp, campaign,
    // sending_ip, category, account): its values in the last 30 days.
    metricFindQuery(query) {
      var dim = (typeof query === 'string' ? query : (query && query.query) || '').trim();
      return this.getResource('options/' + dim).then(function (list) {
        return list.map(function (o) {
          return { text: o.label, value: o.value };
        });
      });
    }
  }

  // useOptions loads an option list from the backend's resources.
  function useOptions(datasource, path) {
    var state = React.useState([]);
    React.useEffect(
      function () {
        var live = true;
        datasource.getResource(path).then(
          function (list) {
            if (live) {
              state[1](list);
            }
          },
          function () {}
        );
        return function () {
          live = false;
        };
      },
      [datasource, path]
    );
    return state[0];
  }

  // filtersText shows {isp: "gmail", sender_domain: "$sender_domain"} as
  // "isp=gmail, sender_domain=$sender_domain" and parses it back.
  function filtersText(filters) {
    return Object.keys(filters || {})
      .map(function (k) {
        return k + '=' + filters[k];
      })
      .join(', ');
  }
  function parseFilters(text) {
    var out = {};
    text.split(',').forEach(function (part) {
      var i = part.indexOf('=');
      if (i > 0) {
        out[part.slice(0, i).trim()] = part.slice(i + 1).trim();
      }
    });
    return out;
  }

  function field(label, tooltip, child) {
    return h(ui.InlineField, { label: label, labelWidth: 16, tooltip: tooltip }, child);
  }

  function QueryEditor(props) {
    var q = Object.assign({}, DEFAULT_QUERY, props.query);
    var metrics = useOptions(props.datasource, 'metrics');
    var dimensions = useOptions(props.datasource, 'dimensions');
    function set(patch, run) {
      props.onChange(Object.assign({}, props.query, patch));
      if (run) {
        props.onRunQuery();
      }
    }
    function text(name, label, tooltip, placeholder) {
      return field(
        label,
        tooltip,
        h(ui.Input, {
          id: 'repute-' + name,
          width: 40,
          value: q[name] || '',
          placeholder: placeholder,
          onChange: function (e) {
            var patch = {};
            patch[name] = e.currentTarget.value;
            set(patch);
          },
          onBlur: props.onRunQuery,
        })
      );
    }
    var rows = [
      field(
        'Query type',
        'What to read from repute',
        h(ui.Select, {
          inputId: 'repute-queryType',
          width: 40,
          options: QUERY_TYPES,
          value: q.queryType,
          onChange: function (o) {
            set({ queryType: o.value }, true);
          },
        })
      ),
    ];
    if (q.queryType === 'stats') {
      rows.push(
        field(
          'Metrics',
          'Counts, and rates with their denominators: bounce_rate = bounced_hard / sent, complaint_rate = complained / delivered, open_rate = opened_human / delivered, machine_open_share = opened_machine / all opens',
          h(ui.MultiSelect, {
            inputId: 'repute-metrics',
            width: 60,
            options: metrics,
            value: q.metrics,
            onChange: function (os) {
              set({ metrics: os.map(function (o) { return o.value; }) }, true);
            },
          })
        ),
        field(
          'Group by',
          'One series (or table row) per value of these',
          h(ui.MultiSelect, {
            inputId: 'repute-groupBy',
            width: 60,
            options: dimensions,
            value: q.groupBy,
            onChange: function (os) {
              set({ groupBy: os.map(function (o) { return o.value; }) }, true);
            },
          })
        ),
        field(
          'Format',
          'Time series (alerting reads these) or one table row per group',
          h(ui.Select, {
            inputId: 'repute-format',
            width: 40,
            options: FORMATS,
            value: q.format,
            onChange: function (o) {
              set({ format: o.value }, true);
            },
          })
        ),
        field(
          'Bucket',
          'The time bucket of a time series',
          h(ui.Select, {
            inputId: 'repute-bucket',
            width: 40,
            options: BUCKETS,
            value: q.bucket,
            onChange: function (o) {
              set({ bucket: o.value }, true);
            },
          })
        ),
        field(
          'Filters',
          'dimension=value, comma-separated; a variable set to All filters nothing',
          h(ui.Input, {
            id: 'repute-filters',
            width: 60,
            defaultValue: filtersText(q.filters),
            placeholder: 'isp=gmail, sender_domain=$sender_domain',
            onBlur: function (e) {
              set({ filters: parseFilters(e.currentTarget.value) }, true);
            },
          })
        )
      );
    } else if (q.queryType === 'flags' || q.queryType === 'decisions') {
      rows.push(
        text('senderDomain', 'Sender domain', 'Only this sender domain (empty: all)', 'news.example.com'),
        text('sendingIp', 'Sending IP', 'Only this sending IP (empty: all)', '192.0.2.1'),
        text('isp', 'Provider', 'Only this mailbox provider (empty: all)', 'gmail')
      );
    } else if (q.queryType === 'suppression') {
      rows.push(text('address', 'Address', 'The address to look up', 'someone@example.com'));
    }
    return h('div', { className: 'repute-query-editor' }, rows);
  }

  function ConfigEditor(props) {
    var options = props.options;
    var jsonData = options.jsonData || {};
    var secureFields = options.secureJsonFields || {};
    function setJSON(name, value) {
      var patch = {};
      patch[name] = value;
      props.onOptionsChange(Object.assign({}, options, { jsonData: Object.assign({}, jsonData, patch) }));
    }
    return h(
      'div',
      { className: 'repute-config-editor' },
      field(
        'URL',
        "repute's address as the Grafana server reaches it",
        h(ui.Input, {
          id: 'repute-url',
          width: 40,
          value: jsonData.url || '',
          placeholder: 'http://127.0.0.1:8080',
          onChange: function (e) {
            setJSON('url', e.currentTarget.value);
          },
        })
      ),
      field(
        'API key',
        'The admin key, or an account key (which sees its own account only)',
        h(ui.SecretInput, {
          id: 'repute-apiKey',
          width: 40,
          isConfigured: Boolean(secureFields.apiKey),
          value: (options.secureJsonData || {}).apiKey || '',
          placeholder: 'rk_…',
          onReset: function () {
            props.onOptionsChange(
              Object.assign({}, options, {
                secureJsonFields: Object.assign({}, secureFields, { apiKey: false }),
                secureJsonData: Object.assign({}, options.secureJsonData, { apiKey: '' }),
              })
            );
          },
          onChange: function (e) {
            props.onOptionsChange(
              Object.assign({}, options, {
                secureJsonData: Object.assign({}, options.secureJsonData, { apiKey: e.currentTarget.value }),
              })
            );
          },
        })
      ),
      field(
        'Account',
        'With the admin key: only this account (empty: all)',
        h(ui.Input, {
          id: 'repute-account',
          width: 40,
          value: jsonData.account || '',
          onChange: function (e) {
            setJSON('account', e.currentTarget.value);
          },
        })
      )
    );
  }

  var plugin = new data.DataSourcePlugin(ReputeDataSource).setConfigEditor(ConfigEditor).setQueryEditor(QueryEditor);

  return {
    plugin: plugin,
    // For the tests (module.test.cjs).
    ReputeDataSource: ReputeDataSource,
    QueryEditor: QueryEditor,
    ConfigEditor: ConfigEditor,
    parseFilters: parseFilters,
    filtersText: filtersText,
  };
});
