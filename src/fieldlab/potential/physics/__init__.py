"""Physics of the potential study: the limb phantom, the finite-element solver and analytic solutions."""
