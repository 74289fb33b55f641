//! riptide-cli
