-- The reduction registry: a certified reduction is never deleted and never edited; only its status
-- moves, once, from certified to reversed.
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
    FOR EACH ROW EXECUTE FUNCTION carbon_reduction_guard();
-- statement
CREATE TRIGGER reductions_no_truncate BEFORE TRUNCATE ON reductions
    FOR EACH STATEMENT EXECUTE FUNCTION carbon_refuse_change();
-- statement
-- A governed version's content is fixed once it leaves draft: what an auditor approved is what runs.
CREATE OR REPLACE FUNCTION carbon_policy_version_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.status <> 'draft' THEN
            RAISE EXCEPTION 'policy_versions: only a draft may be deleted' USING ERRCODE = 'restrict_violation';
        END IF;
        RETURN OLD;
    END IF;
    IF OLD.status <> 'draft' AND ROW(NEW.kind, NEW.subject, NEW.version, NEW.region_code, NEW.payload::text,
            NEW.payload_sha256, NEW.formula_version, NEW.author_user_id)
        IS DISTINCT FROM ROW(OLD.kind, OLD.subject, OLD.version, OLD.region_code, OLD.payload::text,
            OLD.payload_sha256, OLD.formula_version, OLD.author_user_id) THEN
        RAISE EXCEPTION 'policy_versions: a % version cannot be edited', OLD.status USING ERRCODE = 'restrict_violation';
    END IF;
    IF OLD.status IN ('rejected', 'retired') AND NEW.status <> OLD.status THEN
        RAISE EXCEPTION 'policy_versions: a % version is final', OLD.status USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END
$$;
-- statement
CREATE TRIGGER policy_versions_guard BEFORE UPDATE OR DELETE ON policy_versions
    FOR EACH ROW EXECUTE FUNCTION carbon_policy_version_guard();
