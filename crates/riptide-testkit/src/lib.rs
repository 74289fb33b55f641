//! riptide-testkit
