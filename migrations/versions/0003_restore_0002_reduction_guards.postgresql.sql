-- Downgrade to 0002: the registry guard without the evaluation columns.
CREATE OR REPLACE FUNCTION carbon_reduction_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'reductions are append-only: DELETE refused' USING ERRCODE = 'restrict_violation';
    END IF;
    IF ROW(NEW.id, NEW.activity_id, NEW.resident_id, NEW.household_id, NEW.region_code, NEW.activity_type,
           NEW.occurred_at, NEW.methodology_id, NEW.methodology_version, NEW.version_id, NEW.formula_version,
           NEW.factors_sha256, NEW.grams, NEW.trace::text, NEW.facts::text, NEW.created_at)
       IS DISTINCT FROM
       ROW(OLD.id, OLD.activity_id, OLD.resident_id, OLD.household_id, OLD.region_code, OLD.activity_type,
           OLD.occurred_at, OLD.methodology_id, OLD.methodology_version, OLD.version_id, OLD.formula_version,
           OLD.factors_sha256, OLD.grams, OLD.trace::text, OLD.facts::text, OLD.created_at) THEN
        RAISE EXCEPTION 'reductions are append-only: only the status may change' USING ERRCODE = 'restrict_violation';
    END IF;
    IF OLD.status = 'reversed' AND NEW.status <> 'reversed' THEN
        RAISE EXCEPTION 'reductions are append-only: a reversal is final' USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END
$$;
-- statement
CREATE TRIGGER reductions_guard BEFORE UPDATE OR DELETE ON reductions
    FOR EACH ROW EXECUTE FUNCTION carbon_reduction_guard()
