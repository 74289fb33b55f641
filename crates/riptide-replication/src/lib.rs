//! riptide-replication
