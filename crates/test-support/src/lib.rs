//! Test harness: real redis-server on a free port, fixtures, archive builders.
