//! Reports for CI (the secret-presence report); the secrets issue fills it in.
