-- The rules evaluate a reduction once: evaluations are append-only.
CREATE TRIGGER reduction_evaluations_no_update BEFORE UPDATE ON reduction_evaluations
BEGIN SELECT RAISE(ABORT, 'reduction_evaluations is append-only: UPDATE refused'); END
-- statement
CREATE TRIGGER reduction_evaluations_no_delete BEFORE DELETE ON reduction_evaluations
BEGIN SELECT RAISE(ABORT, 'reduction_evaluations is append-only: DELETE refused'); END
-- statement
-- Journal entries and postings are append-only.
CREATE TRIGGER journal_entries_no_update BEFORE UPDATE ON journal_entries
BEGIN SELECT RAISE(ABORT, 'journal_entries is append-only: UPDATE refused'); END
-- statement
CREATE TRIGGER journal_entries_no_delete BEFORE DELETE ON journal_entries
BEGIN SELECT RAISE(ABORT, 'journal_entries is append-only: DELETE refused'); END
-- statement
CREATE TRIGGER postings_no_update BEFORE UPDATE ON postings
BEGIN SELECT RAISE(ABORT, 'postings is append-only: UPDATE refused'); END
-- statement
CREATE TRIGGER postings_no_delete BEFORE DELETE ON postings
BEGIN SELECT RAISE(ABORT, 'postings is append-only: DELETE refused'); END
-- statement
-- Balances follow postings; ck_ledger_accounts_balance_non_negative refuses an overdraft.
-- (SQLite has no deferred triggers: entries are checked to balance before they are written,
-- and by `carbon-points ledger verify`.)
CREATE TRIGGER postings_apply AFTER INSERT ON postings
BEGIN
    UPDATE ledger_accounts SET balance = balance + NEW.amount
    WHERE id = NEW.account_id AND kind NOT IN ('issuance', 'expired', 'reversed');
END
