//! Archive, directory and OCI image conversion to flists; extraction and verification.
