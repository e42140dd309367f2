-- Append-only tables: the database itself refuses UPDATE, DELETE and TRUNCATE.
-- carbon_refuse_change() is shared by every append-only table (the ledger adds its own later).
CREATE OR REPLACE FUNCTION carbon_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation';
END
$$;
-- statement
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION carbon_refuse_change();
-- statement
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION carbon_refuse_change();
-- statement
CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON audit_head
    FOR EACH ROW EXECUTE FUNCTION carbon_refuse_change();
