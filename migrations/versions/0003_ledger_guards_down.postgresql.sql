DROP TRIGGER IF EXISTS journal_entries_balanced ON journal_entries
-- statement
DROP TRIGGER IF EXISTS postings_apply ON postings
-- statement
DROP FUNCTION IF EXISTS carbon_entry_balanced() CASCADE
-- statement
DROP FUNCTION IF EXISTS carbon_postings_apply() CASCADE
-- statement
DROP TRIGGER IF EXISTS reductions_no_delete ON reductions
-- statement
DROP TRIGGER IF EXISTS reductions_immutable ON reductions
-- statement
DROP TRIGGER IF EXISTS reductions_reversal_final ON reductions
-- statement
DROP FUNCTION IF EXISTS carbon_reduction_refuse(text) CASCADE
