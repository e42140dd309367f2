ALTER TABLE ledger_accounts RESET (fillfactor)
-- statement
DROP TRIGGER ledger_accounts_fixed_identity ON ledger_accounts
-- statement
DROP TRIGGER ledger_accounts_no_truncate ON ledger_accounts
-- statement
DROP TRIGGER ledger_accounts_no_delete ON ledger_accounts
-- statement
DROP TRIGGER journal_entries_references ON journal_entries
-- statement
ALTER TABLE journal_entries ADD CONSTRAINT fk_journal_entries_reduction_id_reductions
    FOREIGN KEY (reduction_id) REFERENCES reductions (id)
-- statement
DROP TRIGGER reduction_evaluations_references ON reduction_evaluations
-- statement
ALTER TABLE reduction_evaluations ADD CONSTRAINT fk_reduction_evaluations_account_id_ledger_accounts
    FOREIGN KEY (account_id) REFERENCES ledger_accounts (id)
-- statement
ALTER TABLE reduction_evaluations ADD CONSTRAINT fk_reduction_evaluations_reduction_id_reductions
    FOREIGN KEY (reduction_id) REFERENCES reductions (id)
-- statement
DROP TRIGGER lots_fixed_owner ON lots
-- statement
DROP TRIGGER lots_references ON lots
-- statement
ALTER TABLE lots ADD CONSTRAINT fk_lots_account_id_ledger_accounts FOREIGN KEY (account_id) REFERENCES ledger_accounts (id)
-- statement
ALTER TABLE lots ADD CONSTRAINT fk_lots_entry_id_journal_entries FOREIGN KEY (entry_id) REFERENCES journal_entries (id)
-- statement
DROP TRIGGER postings_references ON postings
-- statement
ALTER TABLE postings ADD CONSTRAINT fk_postings_account_id_ledger_accounts
    FOREIGN KEY (account_id) REFERENCES ledger_accounts (id)
-- statement
ALTER TABLE postings ADD CONSTRAINT fk_postings_entry_id_journal_entries
    FOREIGN KEY (entry_id) REFERENCES journal_entries (id)
-- statement
DROP FUNCTION carbon_check_references() CASCADE
