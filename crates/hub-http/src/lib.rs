//! The hub's HTTP API, web pages, jobs and identity.
