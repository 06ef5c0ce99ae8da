-- The rule engine's shared state (metrics.RulesState, issue 13): the
-- evaluator's state after each cycle (the warm-up, the active flags, the
-- current decisions; JSON of package rules), one row per name whose
-- highest version wins, and the operators' actions (the audit, and the
-- requests of the processes that do not evaluate). Times are Unix
-- nanoseconds, as in rule_decisions.
CREATE TABLE rule_engine_state (
    name    VARCHAR NOT NULL PRIMARY KEY,
    version BIGINT  NOT NULL,
    state   VARCHAR NOT NULL
);
CREATE TABLE rule_operator_actions (
    id            VARCHAR NOT NULL PRIMARY KEY,
    time_ns       BIGINT  NOT NULL,
    who           VARCHAR NOT NULL DEFAULT '',
    action        VARCHAR NOT NULL,
    decision_id   VARCHAR NOT NULL DEFAULT '',
    target        VARCHAR NOT NULL DEFAULT '',
    sender_domain VARCHAR NOT NULL DEFAULT '',
    sending_ip    VARCHAR NOT NULL DEFAULT '',
    isp           VARCHAR NOT NULL DEFAULT '',
    reason        VARCHAR NOT NULL DEFAULT '',
    decision      VARCHAR NOT NULL DEFAULT ''
);
