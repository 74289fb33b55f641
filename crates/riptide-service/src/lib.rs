//! riptide-service
