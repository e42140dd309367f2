-- A settlement statement is what the merchant was told it is owed: only its payment may be recorded.
CREATE TRIGGER settlement_statements_immutable BEFORE UPDATE ON settlement_statements
WHEN OLD.status = 'paid' OR NEW.id IS NOT OLD.id OR NEW.merchant_id IS NOT OLD.merchant_id
    OR NEW.region_code IS NOT OLD.region_code OR NEW.period IS NOT OLD.period
    OR NEW.redemptions IS NOT OLD.redemptions OR NEW.points IS NOT OLD.points
    OR NEW.yuan_per_point IS NOT OLD.yuan_per_point OR NEW.amount_fen IS NOT OLD.amount_fen
    OR NEW.rules_version_id IS NOT OLD.rules_version_id OR NEW.issued_at IS NOT OLD.issued_at
    OR NEW.issued_by_user_id IS NOT OLD.issued_by_user_id
BEGIN
    SELECT RAISE(ABORT, 'settlement_statements: a statement is immutable; only an issued one may be marked paid');
END
-- statement
CREATE TRIGGER settlement_statements_no_delete BEFORE DELETE ON settlement_statements
BEGIN
    SELECT RAISE(ABORT, 'settlement_statements: a statement is immutable; only an issued one may be marked paid');
END
