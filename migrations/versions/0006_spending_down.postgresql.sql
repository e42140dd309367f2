DROP TRIGGER settlement_statements_immutable ON settlement_statements
-- statement
DROP FUNCTION carbon_statement_guard()
-- statement
DROP TRIGGER ledger_accounts_fixed_identity ON ledger_accounts
-- statement
CREATE TRIGGER ledger_accounts_fixed_identity BEFORE UPDATE OF id, kind, resident_id, household_id, enterprise_id,
    merchant_id, region_code ON ledger_accounts
    FOR EACH ROW EXECUTE FUNCTION carbon_refuse_change()
