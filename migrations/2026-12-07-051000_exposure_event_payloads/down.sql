-- What was stripped is gone for good: nothing to undo.
SELECT 1;
