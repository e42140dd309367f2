-- The reduction registry: never deleted, never edited; the status moves once, certified to reversed.
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
-- A governed version's content is fixed once it leaves draft.
CREATE TRIGGER policy_versions_content_fixed BEFORE UPDATE OF kind, subject, version, region_code, payload,
    payload_sha256, formula_version, author_user_id ON policy_versions
WHEN OLD.status <> 'draft'
BEGIN SELECT RAISE(ABORT, 'policy_versions: only a draft can be edited'); END
-- statement
CREATE TRIGGER policy_versions_final BEFORE UPDATE OF status ON policy_versions
WHEN OLD.status IN ('rejected', 'retired') AND NEW.status <> OLD.status
BEGIN SELECT RAISE(ABORT, 'policy_versions: a rejected or retired version is final'); END
-- statement
CREATE TRIGGER policy_versions_delete_draft_only BEFORE DELETE ON policy_versions
WHEN OLD.status <> 'draft'
BEGIN SELECT RAISE(ABORT, 'policy_versions: only a draft may be deleted'); END
