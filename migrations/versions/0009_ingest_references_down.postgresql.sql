DROP TRIGGER policy_versions_fixed_id ON policy_versions
-- statement
DROP TRIGGER activities_fixed_id ON activities
-- statement
DROP TRIGGER activities_no_delete ON activities
-- statement
DROP TRIGGER regions_fixed_code ON regions
-- statement
DROP TRIGGER regions_no_delete ON regions
-- statement
DROP TRIGGER partners_fixed_id ON partners
-- statement
DROP TRIGGER partners_no_delete ON partners
-- statement
DROP TRIGGER households_fixed_id ON households
-- statement
DROP TRIGGER households_no_delete ON households
-- statement
DROP TRIGGER residents_fixed_id ON residents
-- statement
DROP TRIGGER residents_no_delete ON residents
-- statement
DROP TRIGGER reduction_evaluations_references ON reduction_evaluations
-- statement
CREATE TRIGGER reduction_evaluations_references AFTER INSERT ON reduction_evaluations
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION carbon_check_references('reduction_id', 'reductions', 'id',
                                                                'account_id', 'ledger_accounts', 'id')
-- statement
ALTER TABLE reduction_evaluations ADD CONSTRAINT fk_reduction_evaluations_rules_version_id_policy_versions
    FOREIGN KEY (rules_version_id) REFERENCES policy_versions (id)
-- statement
DROP TRIGGER journal_entries_references ON journal_entries
-- statement
CREATE TRIGGER journal_entries_references AFTER INSERT ON journal_entries REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION carbon_check_references('reduction_id', 'reductions', 'id')
-- statement
ALTER TABLE journal_entries ADD CONSTRAINT fk_journal_entries_rule_version_id_policy_versions
    FOREIGN KEY (rule_version_id) REFERENCES policy_versions (id)
-- statement
DROP TRIGGER reductions_references ON reductions
-- statement
ALTER TABLE reductions ADD CONSTRAINT fk_reductions_version_id_policy_versions
    FOREIGN KEY (version_id) REFERENCES policy_versions (id)
-- statement
ALTER TABLE reductions ADD CONSTRAINT fk_reductions_resident_id_residents FOREIGN KEY (resident_id) REFERENCES residents (id)
-- statement
ALTER TABLE reductions ADD CONSTRAINT fk_reductions_region_code_regions FOREIGN KEY (region_code) REFERENCES regions (code)
-- statement
ALTER TABLE reductions ADD CONSTRAINT fk_reductions_household_id_households
    FOREIGN KEY (household_id) REFERENCES households (id)
-- statement
ALTER TABLE reductions ADD CONSTRAINT fk_reductions_activity_id_activities
    FOREIGN KEY (activity_id) REFERENCES activities (id)
-- statement
DROP TRIGGER activities_references ON activities
-- statement
ALTER TABLE activities ADD CONSTRAINT fk_activities_region_code_regions FOREIGN KEY (region_code) REFERENCES regions (code)
-- statement
ALTER TABLE activities ADD CONSTRAINT fk_activities_household_id_households
    FOREIGN KEY (household_id) REFERENCES households (id)
-- statement
ALTER TABLE activities ADD CONSTRAINT fk_activities_resident_id_residents
    FOREIGN KEY (resident_id) REFERENCES residents (id)
-- statement
ALTER TABLE activities ADD CONSTRAINT fk_activities_partner_id_partners FOREIGN KEY (partner_id) REFERENCES partners (id)
