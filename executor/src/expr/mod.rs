//! SQL expressions compiled to vectorized evaluation over Arrow record batches.
