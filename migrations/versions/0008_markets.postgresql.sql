-- Carbon-market batches (issue #8.3): the database's own guarantees against counting twice.
--
-- A reduction that backs serials of an issued batch is never reversed: an auditor first replaces it
-- in its batch (backend/services/market.py replace_member). The batch row is locked before its
-- status is read, so a batch being issued at this instant (the issue holds the same row lock) is
-- seen as issued, and an issue waits for a reversal in flight and then sees the reversed member.
CREATE OR REPLACE FUNCTION carbon_pooled_reduction_guard() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    held BIGINT;
    held_status TEXT;
BEGIN
    IF NEW.status = 'reversed' AND OLD.status <> 'reversed' THEN
        SELECT batch_id INTO held FROM market_batch_members WHERE reduction_id = NEW.id;
        IF held IS NOT NULL THEN
            SELECT status INTO held_status FROM market_batches WHERE id = held FOR SHARE;
            IF held_status IN ('issued', 'sold', 'retired', 'closed') AND EXISTS (
                    SELECT 1 FROM market_batch_members WHERE reduction_id = NEW.id AND status = 'active') THEN
                RAISE EXCEPTION 'reduction % backs serials of market batch %: replace it in the batch before reversing it',
                    NEW.id, held USING ERRCODE = 'restrict_violation';
            END IF;
        END IF;
    END IF;
    RETURN NEW;
END
$$;
-- statement
CREATE TRIGGER reductions_pooled_guard BEFORE UPDATE OF status ON reductions
    FOR EACH ROW EXECUTE FUNCTION carbon_pooled_reduction_guard();
-- statement
-- A batch is never deleted (a draft is discarded); a discarded draft is final; an issued batch never
-- goes back to draft, and its scope, tonnes and serials never change.
CREATE OR REPLACE FUNCTION carbon_market_batch_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'market_batches: a batch is never deleted (discard a draft)' USING ERRCODE = 'restrict_violation';
    END IF;
    IF OLD.status = 'discarded' OR (OLD.status <> 'draft' AND NEW.status IN ('draft', 'discarded')) THEN
        RAISE EXCEPTION 'market_batches: a % batch cannot become %', OLD.status, NEW.status
            USING ERRCODE = 'restrict_violation';
    END IF;
    IF OLD.status <> 'draft' AND ROW(NEW.region_code, NEW.include_subregions, NEW.methodology_id, NEW.vintage,
            NEW.tonnes, NEW.serial_key, NEW.serial_start, NEW.serial_end, NEW.drafted_by_user_id, NEW.drafted_at,
            NEW.issued_by_user_id, NEW.issued_at)
        IS DISTINCT FROM ROW(OLD.region_code, OLD.include_subregions, OLD.methodology_id, OLD.vintage,
            OLD.tonnes, OLD.serial_key, OLD.serial_start, OLD.serial_end, OLD.drafted_by_user_id, OLD.drafted_at,
            OLD.issued_by_user_id, OLD.issued_at) THEN
        RAISE EXCEPTION 'market_batches: an issued batch''s scope, tonnes and serials are fixed'
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END
$$;
-- statement
CREATE TRIGGER market_batches_guard BEFORE UPDATE OR DELETE ON market_batches
    FOR EACH ROW EXECUTE FUNCTION carbon_market_batch_guard();
-- statement
-- Only a draft's members are deleted (when it is discarded); an issued batch's member is withdrawn,
-- once, and otherwise never changes.
CREATE OR REPLACE FUNCTION carbon_market_member_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF (SELECT status FROM market_batches WHERE id = OLD.batch_id) <> 'draft' THEN
            RAISE EXCEPTION 'market_batch_members: only a draft''s members may be deleted'
                USING ERRCODE = 'restrict_violation';
        END IF;
        RETURN OLD;
    END IF;
    IF OLD.status = 'withdrawn' OR ROW(NEW.reduction_id, NEW.batch_id, NEW.grams, NEW.added_at)
            IS DISTINCT FROM ROW(OLD.reduction_id, OLD.batch_id, OLD.grams, OLD.added_at) THEN
        RAISE EXCEPTION 'market_batch_members: a member is only ever withdrawn, once'
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END
$$;
-- statement
CREATE TRIGGER market_batch_members_guard BEFORE UPDATE OR DELETE ON market_batch_members
    FOR EACH ROW EXECUTE FUNCTION carbon_market_member_guard();
-- statement
-- A serial is given to one sale or retirement, once: transaction_id goes from NULL to a value and
-- never changes again; serials are never deleted.
CREATE OR REPLACE FUNCTION carbon_market_serial_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR OLD.transaction_id IS NOT NULL OR NEW.transaction_id IS NULL
       OR ROW(NEW.serial_key, NEW.serial, NEW.batch_id) IS DISTINCT FROM ROW(OLD.serial_key, OLD.serial, OLD.batch_id) THEN
        RAISE EXCEPTION 'market_serials: serial %-% is used once, by one sale or retirement', OLD.serial_key, OLD.serial
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END
$$;
-- statement
CREATE TRIGGER market_serials_used_once BEFORE UPDATE OR DELETE ON market_serials
    FOR EACH ROW EXECUTE FUNCTION carbon_market_serial_guard();
-- statement
CREATE TRIGGER market_serials_no_truncate BEFORE TRUNCATE ON market_serials
    FOR EACH STATEMENT EXECUTE FUNCTION carbon_refuse_change();
-- statement
CREATE TRIGGER market_transactions_append_only BEFORE UPDATE OR DELETE ON market_transactions
    FOR EACH ROW EXECUTE FUNCTION carbon_refuse_change();
-- statement
CREATE TRIGGER market_transactions_no_truncate BEFORE TRUNCATE ON market_transactions
    FOR EACH STATEMENT EXECUTE FUNCTION carbon_refuse_change();
-- statement
-- The log of what was disclosed to banks is append-only.
CREATE TRIGGER bank_share_events_append_only BEFORE UPDATE OR DELETE ON bank_share_events
    FOR EACH ROW EXECUTE FUNCTION carbon_refuse_change();
-- statement
CREATE TRIGGER bank_share_events_no_truncate BEFORE TRUNCATE ON bank_share_events
    FOR EACH STATEMENT EXECUTE FUNCTION carbon_refuse_change();
