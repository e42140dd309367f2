-- The registry, as on SQLite: triggers fire only for the columns an UPDATE sets, so changing a
-- reduction's status (a reversal) costs no row-by-row comparison of the immutable columns.
DROP TRIGGER IF EXISTS reductions_guard ON reductions
-- statement
CREATE OR REPLACE FUNCTION carbon_reduction_refuse(message text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'reductions are append-only: %', message USING ERRCODE = 'restrict_violation';
END
$$;
-- statement
CREATE OR REPLACE FUNCTION carbon_reduction_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM carbon_reduction_refuse(TG_ARGV[0]);
    RETURN NULL;
END
$$;
-- statement
CREATE TRIGGER reductions_no_delete BEFORE DELETE ON reductions
    FOR EACH ROW EXECUTE FUNCTION carbon_reduction_guard('DELETE refused')
-- statement
CREATE TRIGGER reductions_immutable BEFORE UPDATE OF id, activity_id, resident_id, household_id, region_code,
    activity_type, occurred_at, methodology_id, methodology_version, version_id, formula_version,
    factors_sha256, grams, trace, facts, created_at ON reductions
    FOR EACH ROW EXECUTE FUNCTION carbon_reduction_guard('only the status may change')
-- statement
CREATE TRIGGER reductions_reversal_final BEFORE UPDATE OF status ON reductions
    FOR EACH ROW WHEN (OLD.status = 'reversed' AND NEW.status <> 'reversed')
    EXECUTE FUNCTION carbon_reduction_guard('a reversal is final')
-- statement
-- The rules evaluate a reduction once: evaluations are append-only.
CREATE TRIGGER reduction_evaluations_append_only BEFORE UPDATE OR DELETE ON reduction_evaluations
    FOR EACH ROW EXECUTE FUNCTION carbon_refuse_change()
-- statement
CREATE TRIGGER reduction_evaluations_no_truncate BEFORE TRUNCATE ON reduction_evaluations
    FOR EACH STATEMENT EXECUTE FUNCTION carbon_refuse_change()
-- statement
-- Journal entries and postings are append-only.
CREATE TRIGGER journal_entries_append_only BEFORE UPDATE OR DELETE ON journal_entries
    FOR EACH ROW EXECUTE FUNCTION carbon_refuse_change();
-- statement
CREATE TRIGGER journal_entries_no_truncate BEFORE TRUNCATE ON journal_entries
    FOR EACH STATEMENT EXECUTE FUNCTION carbon_refuse_change();
-- statement
CREATE TRIGGER postings_append_only BEFORE UPDATE OR DELETE ON postings
    FOR EACH ROW EXECUTE FUNCTION carbon_refuse_change();
-- statement
CREATE TRIGGER postings_no_truncate BEFORE TRUNCATE ON postings
    FOR EACH STATEMENT EXECUTE FUNCTION carbon_refuse_change();
-- statement
ALTER TABLE journal_entries ALTER COLUMN created_txid SET DEFAULT txid_current()
-- statement
-- Postings are applied to the balances they move, set-based, once per statement; a wallet that
-- would go below zero fails ck_ledger_accounts_balance_non_negative. Postings may only join an
-- entry written in the same transaction, so no one can unbalance an entry already committed.
CREATE OR REPLACE FUNCTION carbon_postings_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM (SELECT DISTINCT entry_id FROM inserted) i JOIN journal_entries e ON e.id = i.entry_id
               WHERE e.created_txid IS DISTINCT FROM txid_current()) THEN
        RAISE EXCEPTION 'postings may only be added to a journal entry of the same transaction'
            USING ERRCODE = 'restrict_violation';
    END IF;
    UPDATE ledger_accounts a SET balance = a.balance + d.delta
    FROM (SELECT account_id, sum(amount) AS delta FROM inserted GROUP BY account_id) d
    WHERE a.id = d.account_id AND a.kind NOT IN ('issuance', 'expired', 'reversed');
    RETURN NULL;
END
$$;
-- statement
CREATE TRIGGER postings_apply AFTER INSERT ON postings REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION carbon_postings_apply();
-- statement
-- Double entry, checked at commit: every entry's postings sum to zero, and there are two or more.
CREATE OR REPLACE FUNCTION carbon_entry_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    total numeric;
    n integer;
BEGIN
    SELECT coalesce(sum(amount), 0), count(*) INTO total, n FROM postings WHERE entry_id = NEW.id;
    IF total <> 0 OR n < 2 THEN
        RAISE EXCEPTION 'journal entry % (%) does not balance: % postings summing to %', NEW.id,
            NEW.idempotency_key, n, total USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END
$$;
-- statement
CREATE CONSTRAINT TRIGGER journal_entries_balanced AFTER INSERT ON journal_entries
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION carbon_entry_balanced();
