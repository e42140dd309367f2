DROP TRIGGER IF EXISTS journal_entries_balanced ON journal_entries
-- statement
DROP TRIGGER IF EXISTS postings_apply ON postings
-- statement
DROP FUNCTION IF EXISTS carbon_entry_balanced() CASCADE
-- statement
DROP FUNCTION IF EXISTS carbon_postings_apply() CASCADE
