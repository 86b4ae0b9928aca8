"""INR study: fit implicit neural representations (SIREN variants, hash grid) to MPM particle fields and score them."""
