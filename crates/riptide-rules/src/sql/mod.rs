//! SQL of sync rules: parsing with sqlparser, lowering into the IR, and the two query kinds.

pub(crate) mod data_query;
pub(crate) mod dialect;
pub(crate) mod lower;
pub(crate) mod parameter_query;
pub(crate) mod projection;
pub(crate) mod select;
