DROP TRIGGER IF EXISTS postings_apply
