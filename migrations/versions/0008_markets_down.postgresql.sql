-- The tables' own triggers go with the tables; the registry's guard and the functions stay behind.
DROP TRIGGER reductions_pooled_guard ON reductions
-- statement
DROP FUNCTION carbon_pooled_reduction_guard()
-- statement
DROP FUNCTION carbon_market_batch_guard() CASCADE
-- statement
DROP FUNCTION carbon_market_member_guard() CASCADE
-- statement
DROP FUNCTION carbon_market_serial_guard() CASCADE
