-- The round-trip floor for the benchmark: one EVALSHA on one session key that does nothing.
return 1
