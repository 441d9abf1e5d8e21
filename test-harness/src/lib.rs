//! lockstep-harness: hosts that run the real plugin artifacts exactly as Fluent Bit does.
