-- requires: 20.3
-- Column codecs for the bulky free-text columns. CODEC does not exist on
-- 18.16, so this migration waits (unapplied, unrecorded) until the server is
-- at least the version above. Parts written afterwards use the codec; older
-- parts get it when merged or mutated. Not exercised by make test, which runs
-- 18.16.
ALTER TABLE events
    MODIFY COLUMN diagnostic String CODEC(ZSTD(1)),
    MODIFY COLUMN user_agent String CODEC(ZSTD(1)),
    MODIFY COLUMN url String CODEC(ZSTD(1)),
    MODIFY COLUMN source_ref String CODEC(ZSTD(1));
