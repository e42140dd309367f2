-- Carbon-market batches (issue #8.3): the database's own guarantees against counting twice.
-- (SQLite serialises writers, so no lock is needed to read a batch's status here.)
CREATE TRIGGER reductions_pooled_guard BEFORE UPDATE OF status ON reductions
WHEN NEW.status = 'reversed' AND OLD.status <> 'reversed' AND EXISTS (
    SELECT 1 FROM market_batch_members m JOIN market_batches b ON b.id = m.batch_id
    WHERE m.reduction_id = NEW.id AND m.status = 'active' AND b.status IN ('issued', 'sold', 'retired', 'closed'))
BEGIN
    SELECT RAISE(ABORT, 'reductions: this reduction backs serials of an issued market batch; replace it in the batch before reversing it');
END
-- statement
CREATE TRIGGER market_batches_no_delete BEFORE DELETE ON market_batches
BEGIN
    SELECT RAISE(ABORT, 'market_batches: a batch is never deleted (discard a draft)');
END
-- statement
CREATE TRIGGER market_batches_status BEFORE UPDATE OF status ON market_batches
WHEN OLD.status = 'discarded' OR (OLD.status <> 'draft' AND NEW.status IN ('draft', 'discarded'))
BEGIN
    SELECT RAISE(ABORT, 'market_batches: a discarded batch is final and an issued one never goes back');
END
-- statement
CREATE TRIGGER market_batches_fixed BEFORE UPDATE ON market_batches
WHEN OLD.status <> 'draft' AND (NEW.region_code IS NOT OLD.region_code
    OR NEW.include_subregions IS NOT OLD.include_subregions OR NEW.methodology_id IS NOT OLD.methodology_id
    OR NEW.vintage IS NOT OLD.vintage OR NEW.tonnes IS NOT OLD.tonnes OR NEW.serial_key IS NOT OLD.serial_key
    OR NEW.serial_start IS NOT OLD.serial_start OR NEW.serial_end IS NOT OLD.serial_end
    OR NEW.drafted_by_user_id IS NOT OLD.drafted_by_user_id OR NEW.drafted_at IS NOT OLD.drafted_at
    OR NEW.issued_by_user_id IS NOT OLD.issued_by_user_id OR NEW.issued_at IS NOT OLD.issued_at)
BEGIN
    SELECT RAISE(ABORT, 'market_batches: an issued batch''s scope, tonnes and serials are fixed');
END
-- statement
CREATE TRIGGER market_batch_members_delete_draft_only BEFORE DELETE ON market_batch_members
WHEN (SELECT status FROM market_batches WHERE id = OLD.batch_id) <> 'draft'
BEGIN
    SELECT RAISE(ABORT, 'market_batch_members: only a draft''s members may be deleted');
END
-- statement
CREATE TRIGGER market_batch_members_fixed BEFORE UPDATE ON market_batch_members
WHEN OLD.status = 'withdrawn' OR NEW.reduction_id IS NOT OLD.reduction_id OR NEW.batch_id IS NOT OLD.batch_id
    OR NEW.grams IS NOT OLD.grams OR NEW.added_at IS NOT OLD.added_at
BEGIN
    SELECT RAISE(ABORT, 'market_batch_members: a member is only ever withdrawn, once');
END
-- statement
CREATE TRIGGER market_serials_used_once BEFORE UPDATE ON market_serials
WHEN OLD.transaction_id IS NOT NULL OR NEW.transaction_id IS NULL OR NEW.serial_key IS NOT OLD.serial_key
    OR NEW.serial IS NOT OLD.serial OR NEW.batch_id IS NOT OLD.batch_id
BEGIN
    SELECT RAISE(ABORT, 'market_serials: a serial is used once, by one sale or retirement');
END
-- statement
CREATE TRIGGER market_serials_no_delete BEFORE DELETE ON market_serials
BEGIN
    SELECT RAISE(ABORT, 'market_serials: a serial is never deleted');
END
-- statement
CREATE TRIGGER market_transactions_no_update BEFORE UPDATE ON market_transactions
BEGIN
    SELECT RAISE(ABORT, 'market_transactions is append-only: UPDATE refused');
END
-- statement
CREATE TRIGGER market_transactions_no_delete BEFORE DELETE ON market_transactions
BEGIN
    SELECT RAISE(ABORT, 'market_transactions is append-only: DELETE refused');
END
-- statement
CREATE TRIGGER bank_share_events_no_update BEFORE UPDATE ON bank_share_events
BEGIN
    SELECT RAISE(ABORT, 'bank_share_events is append-only: UPDATE refused');
END
-- statement
CREATE TRIGGER bank_share_events_no_delete BEFORE DELETE ON bank_share_events
BEGIN
    SELECT RAISE(ABORT, 'bank_share_events is append-only: DELETE refused');
END
