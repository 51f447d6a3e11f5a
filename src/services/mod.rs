//! Throwaway local servers that paytool itself starts and stops (for a load test's
//! target, and for the integration tests): never a server started by hand.

pub mod postgres;
