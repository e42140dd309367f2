-- The bulk ledger tables check their references once per statement instead of once per row.
--
-- A row-level foreign key costs every inserted row an index probe and a KEY SHARE lock on the
-- row it names; a batch of 1,000 credits wrote about 7,000 of them. The rows these tables name are
-- never deleted and their ids never change (journal entries and reductions are append-only; ledger
-- accounts are refused DELETE and a change of identity below), so the one thing a foreign key
-- still guards, that the named row exists, is checked set-based over the statement's new rows.
CREATE OR REPLACE FUNCTION carbon_check_references() RETURNS trigger LANGUAGE plpgsql AS $$
-- TG_ARGV holds triples: the column of the new rows, the table it names, that table's key column.
DECLARE
    missing text;
BEGIN
    FOR i IN 0 .. TG_NARGS / 3 - 1 LOOP
        EXECUTE format('SELECT n.%1$I::text FROM inserted n WHERE n.%1$I IS NOT NULL AND NOT EXISTS '
                       '(SELECT FROM %2$I r WHERE r.%3$I = n.%1$I) LIMIT 1',
                       TG_ARGV[i * 3], TG_ARGV[i * 3 + 1], TG_ARGV[i * 3 + 2]) INTO missing;
        IF missing IS NOT NULL THEN
            RAISE EXCEPTION 'insert into % refused: %.% = % names no row of %', TG_TABLE_NAME, TG_TABLE_NAME,
                TG_ARGV[i * 3], missing, TG_ARGV[i * 3 + 1] USING ERRCODE = 'foreign_key_violation';
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;
-- statement
ALTER TABLE postings DROP CONSTRAINT fk_postings_entry_id_journal_entries
-- statement
ALTER TABLE postings DROP CONSTRAINT fk_postings_account_id_ledger_accounts
-- statement
CREATE TRIGGER postings_references AFTER INSERT ON postings REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION carbon_check_references('entry_id', 'journal_entries', 'id',
                                                                'account_id', 'ledger_accounts', 'id')
-- statement
ALTER TABLE lots DROP CONSTRAINT fk_lots_entry_id_journal_entries
-- statement
ALTER TABLE lots DROP CONSTRAINT fk_lots_account_id_ledger_accounts
-- statement
CREATE TRIGGER lots_references AFTER INSERT ON lots REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION carbon_check_references('entry_id', 'journal_entries', 'id',
                                                                'account_id', 'ledger_accounts', 'id')
-- statement
-- Lots change only in what remains of them; who holds them and which entry made them is fixed.
CREATE TRIGGER lots_fixed_owner BEFORE UPDATE OF id, account_id, entry_id, amount ON lots
    FOR EACH ROW EXECUTE FUNCTION carbon_refuse_change()
-- statement
ALTER TABLE reduction_evaluations DROP CONSTRAINT fk_reduction_evaluations_reduction_id_reductions
-- statement
ALTER TABLE reduction_evaluations DROP CONSTRAINT fk_reduction_evaluations_account_id_ledger_accounts
-- statement
CREATE TRIGGER reduction_evaluations_references AFTER INSERT ON reduction_evaluations
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION carbon_check_references('reduction_id', 'reductions', 'id',
                                                                'account_id', 'ledger_accounts', 'id')
-- statement
ALTER TABLE journal_entries DROP CONSTRAINT fk_journal_entries_reduction_id_reductions
-- statement
CREATE TRIGGER journal_entries_references AFTER INSERT ON journal_entries REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION carbon_check_references('reduction_id', 'reductions', 'id')
-- statement
-- What those checks rely on: a ledger account is never deleted and never becomes another account.
CREATE TRIGGER ledger_accounts_no_delete BEFORE DELETE ON ledger_accounts
    FOR EACH ROW EXECUTE FUNCTION carbon_refuse_change()
-- statement
CREATE TRIGGER ledger_accounts_no_truncate BEFORE TRUNCATE ON ledger_accounts
    FOR EACH STATEMENT EXECUTE FUNCTION carbon_refuse_change()
-- statement
CREATE TRIGGER ledger_accounts_fixed_identity BEFORE UPDATE OF id, kind, resident_id, household_id, enterprise_id,
    merchant_id, region_code ON ledger_accounts
    FOR EACH ROW EXECUTE FUNCTION carbon_refuse_change()
-- statement
-- Every credit updates its wallet's balance: room on each page lets PostgreSQL update the row in
-- place (a HOT update) instead of writing a new entry into each of the table's six indexes.
ALTER TABLE ledger_accounts SET (fillfactor = 70)
