-- A ledger account's owner never changes: the project it belongs to joins the fixed columns.
DROP TRIGGER ledger_accounts_fixed_identity ON ledger_accounts
-- statement
CREATE TRIGGER ledger_accounts_fixed_identity BEFORE UPDATE OF id, kind, resident_id, household_id, enterprise_id,
    merchant_id, project_id, region_code ON ledger_accounts
    FOR EACH ROW EXECUTE FUNCTION carbon_refuse_change()
-- statement
-- A settlement statement is what the merchant was told it is owed: only its payment may be recorded.
CREATE OR REPLACE FUNCTION carbon_statement_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR OLD.status = 'paid'
       OR ROW(NEW.id, NEW.merchant_id, NEW.region_code, NEW.period, NEW.redemptions, NEW.points, NEW.yuan_per_point,
              NEW.amount_fen, NEW.rules_version_id, NEW.issued_at, NEW.issued_by_user_id)
          IS DISTINCT FROM ROW(OLD.id, OLD.merchant_id, OLD.region_code, OLD.period, OLD.redemptions, OLD.points,
              OLD.yuan_per_point, OLD.amount_fen, OLD.rules_version_id, OLD.issued_at, OLD.issued_by_user_id) THEN
        RAISE EXCEPTION 'settlement_statements: a statement is immutable; only an issued one may be marked paid'
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END
$$;
-- statement
CREATE TRIGGER settlement_statements_immutable BEFORE UPDATE OR DELETE ON settlement_statements
    FOR EACH ROW EXECUTE FUNCTION carbon_statement_guard()
