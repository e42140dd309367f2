-- Adding a foreign key made SQLite rebuild `reductions`, which drops its triggers: put them back,
-- with the evaluation results (rules version, points, capped grams, campaign) set once.
DROP TRIGGER IF EXISTS reductions_no_delete
-- statement
DROP TRIGGER IF EXISTS reductions_immutable
-- statement
DROP TRIGGER IF EXISTS reductions_reversal_final
-- statement
CREATE TRIGGER reductions_no_delete BEFORE DELETE ON reductions
BEGIN SELECT RAISE(ABORT, 'reductions are append-only: DELETE refused'); END
-- statement
CREATE TRIGGER reductions_immutable BEFORE UPDATE OF id, activity_id, resident_id, household_id, region_code,
    activity_type, occurred_at, methodology_id, methodology_version, version_id, formula_version,
    factors_sha256, grams, trace, facts, created_at ON reductions
BEGIN SELECT RAISE(ABORT, 'reductions are append-only: only the status may change'); END
-- statement
CREATE TRIGGER reductions_reversal_final BEFORE UPDATE OF status ON reductions
WHEN OLD.status = 'reversed' AND NEW.status <> 'reversed'
BEGIN SELECT RAISE(ABORT, 'reductions are append-only: a reversal is final'); END
-- statement
CREATE TRIGGER reductions_evaluated_once BEFORE UPDATE OF rules_version_id, points, capped_grams, campaign,
    bonus_points ON reductions
WHEN OLD.points IS NOT NULL
BEGIN SELECT RAISE(ABORT, 'reductions are append-only: the rules evaluate a reduction once'); END
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
