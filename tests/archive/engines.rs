//! Round trips through real engines.
