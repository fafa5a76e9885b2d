//! The zflist command implementations (session editing, pack, extract, inspect, verify).
