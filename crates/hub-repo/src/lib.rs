//! The hub's repository model: catalog, content-addressed flist files, links, tags, audit.
