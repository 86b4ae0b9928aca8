"""INR architectures: SIREN variants and the multiresolution hash grid, built by name in ``registry``."""
