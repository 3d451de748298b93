//! The upstream simulator (to be written).
