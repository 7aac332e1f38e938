//! Turns an auth config and credentials into a ready `Authorization` header.
