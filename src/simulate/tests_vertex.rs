//! Vertex tests.
