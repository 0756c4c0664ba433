//! Tests of the decision tries.
