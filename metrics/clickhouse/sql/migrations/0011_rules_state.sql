-- The rule engine's shared state (metrics.RulesState, issue 13): the
-- evaluator's state after each cycle (the warm-up, the active flags, the
-- current decisions; JSON of package rules), and the operators' actions
-- (the audit, and the requests of the processes that do not evaluate).
-- rule_engine_state gets a row per save; reads take the highest version
-- (ReplacingMergeTree(version) collapses the rest in merges).
-- rule_operator_actions is as rule_flag_changes: an action appended again
-- is another row with the same sorting key, collapsed by FINAL (the first
-- stored wins). Times are Unix nanoseconds in Int64.
CREATE TABLE IF NOT EXISTS rule_engine_state (
    name    String,
    version Int64,
    state   String
) ENGINE = ReplacingMergeTree(version)
ORDER BY name;
CREATE TABLE IF NOT EXISTS rule_operator_actions (
    time_ns       Int64,
    id            String,
    who           String,
    action        String,
    decision_id   String,
    target        String,
    sender_domain String,
    sending_ip    String,
    isp           String,
    reason        String,
    decision      String,
    precedence    UInt64
) ENGINE = ReplacingMergeTree(precedence)
ORDER BY (time_ns, id);
