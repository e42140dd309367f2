-- Downgrade to 0002: SQLite rebuilt `reductions` again, dropping its triggers; restore 0002's.
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
