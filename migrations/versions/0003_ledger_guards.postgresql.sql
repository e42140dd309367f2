-- The registry: evaluation results (rules version, points, capped grams, campaign) are set once.
CREATE OR REPLACE FUNCTION carbon_reduction_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'reductions are append-only: DELETE refused' USING ERRCODE = 'restrict_violation';
    END IF;
    IF ROW(NEW.id, NEW.activity_id, NEW.resident_id, NEW.household_id, NEW.region_code, NEW.activity_type,
           NEW.occurred_at, NEW.methodology_id, NEW.methodology_version, NEW.version_id, NEW.formula_version,
           NEW.factors_sha256, NEW.grams, NEW.trace::text, NEW.facts::text, NEW.created_at)
       IS DISTINCT FROM
       ROW(OLD.id, OLD.activity_id, OLD.resident_id, OLD.household_id, OLD.region_code, OLD.activity_type,
           OLD.occurred_at, OLD.methodology_id, OLD.methodology_version, OLD.version_id, OLD.formula_version,
           OLD.factors_sha256, OLD.grams, OLD.trace::text, OLD.facts::text, OLD.created_at) THEN
        RAISE EXCEPTION 'reductions are append-only: only the status may change' USING ERRCODE = 'restrict_violation';
    END IF;
    IF OLD.points IS NOT NULL AND ROW(NEW.rules_version_id, NEW.points, NEW.capped_grams, NEW.campaign, NEW.bonus_points)
       IS DISTINCT FROM ROW(OLD.rules_version_id, OLD.points, OLD.capped_grams, OLD.campaign, OLD.bonus_points) THEN
        RAISE EXCEPTION 'reductions are append-only: the rules evaluate a reduction once' USING ERRCODE = 'restrict_violation';
    END IF;
    IF OLD.status = 'reversed' AND NEW.status <> 'reversed' THEN
        RAISE EXCEPTION 'reductions are append-only: a reversal is final' USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END
$$;
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
    IF EXISTS (SELECT 1 FROM inserted i JOIN journal_entries e ON e.id = i.entry_id
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
