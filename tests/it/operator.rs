//! The operator's safety nets: admin commands never create a store by
//! accident, an import is all or nothing, and files are private.
