-- A row-level foreign key costs a lookup and a FOR KEY SHARE lock per inserted row; every
-- activity, reduction, evaluation and journal entry names a handful of hot rows (its region, its
-- methodology and rule versions), so ingesting a batch locked the same few rows thousands of
-- times. As for the ledger tables in 0004, the references are checked once per INSERT statement
-- (carbon_check_references), and the rows they name are protected instead: never deleted, never
-- renumbered (policy versions: carbon_policy_version_guard already refuses deleting all but a
-- draft, and a draft is never referenced).
ALTER TABLE activities DROP CONSTRAINT fk_activities_partner_id_partners
-- statement
ALTER TABLE activities DROP CONSTRAINT fk_activities_resident_id_residents
-- statement
ALTER TABLE activities DROP CONSTRAINT fk_activities_household_id_households
-- statement
ALTER TABLE activities DROP CONSTRAINT fk_activities_region_code_regions
-- statement
CREATE TRIGGER activities_references AFTER INSERT ON activities REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION carbon_check_references('partner_id', 'partners', 'id',
        'resident_id', 'residents', 'id', 'household_id', 'households', 'id', 'region_code', 'regions', 'code')
-- statement
ALTER TABLE reductions DROP CONSTRAINT fk_reductions_activity_id_activities
-- statement
ALTER TABLE reductions DROP CONSTRAINT fk_reductions_household_id_households
-- statement
ALTER TABLE reductions DROP CONSTRAINT fk_reductions_region_code_regions
-- statement
ALTER TABLE reductions DROP CONSTRAINT fk_reductions_resident_id_residents
-- statement
ALTER TABLE reductions DROP CONSTRAINT fk_reductions_version_id_policy_versions
-- statement
CREATE TRIGGER reductions_references AFTER INSERT ON reductions REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION carbon_check_references('activity_id', 'activities', 'id',
        'household_id', 'households', 'id', 'region_code', 'regions', 'code', 'resident_id', 'residents', 'id',
        'version_id', 'policy_versions', 'id')
-- statement
ALTER TABLE journal_entries DROP CONSTRAINT fk_journal_entries_rule_version_id_policy_versions
-- statement
DROP TRIGGER journal_entries_references ON journal_entries
-- statement
CREATE TRIGGER journal_entries_references AFTER INSERT ON journal_entries REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION carbon_check_references('reduction_id', 'reductions', 'id',
        'rule_version_id', 'policy_versions', 'id')
-- statement
ALTER TABLE reduction_evaluations DROP CONSTRAINT fk_reduction_evaluations_rules_version_id_policy_versions
-- statement
DROP TRIGGER reduction_evaluations_references ON reduction_evaluations
-- statement
CREATE TRIGGER reduction_evaluations_references AFTER INSERT ON reduction_evaluations
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION carbon_check_references('reduction_id', 'reductions', 'id',
        'account_id', 'ledger_accounts', 'id', 'rules_version_id', 'policy_versions', 'id')
-- statement
-- What those references name stays: refused by the database, not only absent from the code.
CREATE TRIGGER residents_no_delete BEFORE DELETE ON residents FOR EACH ROW EXECUTE FUNCTION carbon_refuse_change()
-- statement
CREATE TRIGGER residents_fixed_id BEFORE UPDATE OF id ON residents FOR EACH ROW EXECUTE FUNCTION carbon_refuse_change()
-- statement
CREATE TRIGGER households_no_delete BEFORE DELETE ON households FOR EACH ROW EXECUTE FUNCTION carbon_refuse_change()
-- statement
CREATE TRIGGER households_fixed_id BEFORE UPDATE OF id ON households
    FOR EACH ROW EXECUTE FUNCTION carbon_refuse_change()
-- statement
CREATE TRIGGER partners_no_delete BEFORE DELETE ON partners FOR EACH ROW EXECUTE FUNCTION carbon_refuse_change()
-- statement
CREATE TRIGGER partners_fixed_id BEFORE UPDATE OF id ON partners FOR EACH ROW EXECUTE FUNCTION carbon_refuse_change()
-- statement
CREATE TRIGGER regions_no_delete BEFORE DELETE ON regions FOR EACH ROW EXECUTE FUNCTION carbon_refuse_change()
-- statement
CREATE TRIGGER regions_fixed_code BEFORE UPDATE OF code ON regions FOR EACH ROW EXECUTE FUNCTION carbon_refuse_change()
-- statement
CREATE TRIGGER activities_no_delete BEFORE DELETE ON activities FOR EACH ROW EXECUTE FUNCTION carbon_refuse_change()
-- statement
CREATE TRIGGER activities_fixed_id BEFORE UPDATE OF id ON activities
    FOR EACH ROW EXECUTE FUNCTION carbon_refuse_change()
-- statement
CREATE TRIGGER policy_versions_fixed_id BEFORE UPDATE OF id ON policy_versions
    FOR EACH ROW EXECUTE FUNCTION carbon_refuse_change()
