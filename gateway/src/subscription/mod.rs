//! Subscriptions: the H3 cell index that finds interested clients, and each client's bounded
//! outgoing queue.

pub mod index;
pub(crate) mod pace;
pub mod queue;
