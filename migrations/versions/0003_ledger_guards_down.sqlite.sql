DROP TRIGGER IF EXISTS postings_apply
-- statement
DROP TRIGGER IF EXISTS reductions_evaluated_once
